package vcard

import (
	"context"

	"encoding/hex"
	"fmt"
	"github.com/p11-card/p11-card/apdu"
	"strings"
	"sync"
	"time"
)

// Entry is one logged exchange.
type Entry struct {
	N    int       // 1 for the first command logged
	At   time.Time // when the command arrived
	Took time.Duration
	Cmd  []byte // redacted (apdu.Redact): the data of PIN- and key-bearing commands is hidden
	Resp []byte // redacted (apdu.RedactResponse): private-key results are hidden; nil when Err is set
	Err  error
}

// Log records the APDUs a card sees. Commands and responses are stored redacted (see
// Redact; private-key results such as plaintexts are hidden too), so a log can be printed
// by a failing test without showing a PIN, a key or a decrypted secret. Safe for
// concurrent use.
type Log struct {
	mu      sync.Mutex
	n       int
	entries []Entry
	// Max bounds the entries kept (oldest dropped); 0 keeps 10000. The counter goes on.
	Max int
}

// WithLog wraps c so that every exchange is recorded in l.
func WithLog(c Card, l *Log) Card { return &logCard{Card: c, l: l} }

type logCard struct {
	Card
	l *Log
}

func (c *logCard) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	start := time.Now()
	red := Redact(cmd)
	resp, err := c.Card.Transmit(ctx, cmd)
	c.l.add(Entry{At: start, Took: time.Since(start), Cmd: red, Resp: apdu.RedactResponse(cmd, resp), Err: err})
	return resp, err
}

func (l *Log) add(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	e.N = l.n
	if e.Err != nil {
		e.Resp = nil
	}
	max := l.Max
	if max <= 0 {
		max = 10000
	}
	if len(l.entries) >= max {
		l.entries = append(l.entries[:0], l.entries[len(l.entries)-max+1:]...)
	}
	l.entries = append(l.entries, e)
}

// Count is the number of commands logged since the log was made or last cleared.
func (l *Log) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// CountINS counts the kept entries whose instruction byte is ins.
func (l *Log) CountINS(ins byte) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := 0
	for _, e := range l.entries {
		if len(e.Cmd) >= 2 && e.Cmd[1] == ins {
			k++
		}
	}
	return k
}

// Entries returns a copy of the kept entries, oldest first.
func (l *Log) Entries() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Entry(nil), l.entries...)
}

// Since returns a copy of the kept entries logged after the first n (Count was n then),
// oldest first. Entries dropped by Max are not there: compare len with Count() - n.
func (l *Log) Since(n int) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := len(l.entries)
	for i > 0 && l.entries[i-1].N > n {
		i--
	}
	return append([]Entry(nil), l.entries[i:]...)
}

// Clear forgets every entry and sets the counter to 0.
func (l *Log) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n = 0
	l.entries = nil
}

// String renders the log in the transcript notation: "> command" and "< response" lines
// in hex, "! error" for a failed exchange.
func (l *Log) String() string {
	var b strings.Builder
	for _, e := range l.Entries() {
		fmt.Fprintf(&b, "> %s\n", strings.ToUpper(hex.EncodeToString(e.Cmd)))
		if e.Err != nil {
			fmt.Fprintf(&b, "! %v\n", e.Err)
		} else {
			fmt.Fprintf(&b, "< %s\n", strings.ToUpper(hex.EncodeToString(e.Resp)))
		}
	}
	return b.String()
}
