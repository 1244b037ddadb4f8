package pcsc

import "sync/atomic"

// CallStats counts PC/SC calls made by this process since it started (or since the last
// ResetStats). Benchmarks and tests read it to check how many round trips to pcscd an
// operation costs.
type CallStats struct {
	Establish, Release, Cancel, ListReaders, GetStatusChange uint64
	Connect, Reconnect, Disconnect, Status                   uint64
	BeginTransaction, EndTransaction, Transmit               uint64
	Control                                                  uint64
}

// Total is the sum of all calls.
func (s CallStats) Total() uint64 {
	return s.Establish + s.Release + s.Cancel + s.ListReaders + s.GetStatusChange + s.Connect + s.Reconnect +
		s.Disconnect + s.Status + s.BeginTransaction + s.EndTransaction + s.Transmit + s.Control
}

// Sub is s minus an earlier snapshot.
func (s CallStats) Sub(o CallStats) CallStats {
	return CallStats{
		Establish: s.Establish - o.Establish, Release: s.Release - o.Release, Cancel: s.Cancel - o.Cancel,
		ListReaders: s.ListReaders - o.ListReaders, GetStatusChange: s.GetStatusChange - o.GetStatusChange,
		Connect: s.Connect - o.Connect, Reconnect: s.Reconnect - o.Reconnect, Disconnect: s.Disconnect - o.Disconnect,
		Status: s.Status - o.Status, BeginTransaction: s.BeginTransaction - o.BeginTransaction,
		EndTransaction: s.EndTransaction - o.EndTransaction, Transmit: s.Transmit - o.Transmit,
		Control: s.Control - o.Control,
	}
}

var stats struct {
	establish, release, cancel, listReaders, getStatusChange atomic.Uint64
	connect, reconnect, disconnect, status                   atomic.Uint64
	beginTransaction, endTransaction, transmit               atomic.Uint64
	control                                                  atomic.Uint64
}

// Stats returns the PC/SC call counters. Safe for concurrent use.
func Stats() CallStats {
	return CallStats{
		Establish: stats.establish.Load(), Release: stats.release.Load(), Cancel: stats.cancel.Load(),
		ListReaders: stats.listReaders.Load(), GetStatusChange: stats.getStatusChange.Load(),
		Connect: stats.connect.Load(), Reconnect: stats.reconnect.Load(), Disconnect: stats.disconnect.Load(),
		Status: stats.status.Load(), BeginTransaction: stats.beginTransaction.Load(),
		EndTransaction: stats.endTransaction.Load(), Transmit: stats.transmit.Load(),
		Control: stats.control.Load(),
	}
}
