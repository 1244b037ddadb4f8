// Package slotmgr keeps the PKCS#11 slot table: one slot per PC/SC reader, the card in
// it, the driver bound to that card, and a generation number that changes on every
// insertion or swap. It is the only part of p11-card with long-lived goroutines.
//
// # Model
//
// A slot is keyed by reader name. IDs start at 1 and are handed out in the order readers
// are first seen; an ID stays with its reader name while the Manager lives, so a reader
// unplugged and plugged back (or one that returns after a pcscd restart) gets its slot
// back, and an ID never names another reader. Slots hides readers that are gone (so
// C_GetSlotList lists only readers that exist, and nothing while pcscd is down); Slot
// still answers for them ("reader gone, no token"), because PKCS#11 says every slot
// C_GetSlotList ever reported can be queried with C_GetSlotInfo.
//
// A card in a reader gets a generation (Gen), unique across all slots: a new one for every
// insertion and every swap, including a swap between two reads of the reader state (seen
// through pcsc-lite's per-reader event counter), and for every card after the PC/SC
// service is lost or restarts, since all handles die with it. When the watcher's Wait
// fails, the tokens bound before it began end at once; if the service answers again
// the readers stay listed and their cards are bound afresh, else the table empties
// until it is back. A restart can also be silent (package pcsc re-establishes its
// contexts inside, and pcsc-lite's counter starting again can show the same count): any
// read then sees that a reader where we hold a connection no longer reads "in use".
// Present means a driver is bound; a card no driver takes, a mute card or a failed bind
// leaves a slot without token, with Err set.
// When a generation ends its Removed channel is closed and its Conn answers
// ErrTokenRemoved from then on: the engine drops the sessions of that generation
// (pkcs11-usage.md §3.4) and an old session's Conn can never reach a new card.
//
// # Events and I/O
//
// One watcher goroutine owns a dedicated context and sits in Context.Wait (pcsc-lite's
// SCardGetStatusChange with the PnP notification reader). When it wakes it reads the reader
// list and states afresh and applies the difference. Its first Wait begins
// Options.FirstWait (50ms) after Start, or as soon as a WaitChange caller blocks: a
// process done by then (most that load a PKCS#11 module are) never opens the Wait's
// context nor cancels it at Close, and the Wait starts from the states read before, so a
// change in between wakes it at once. Each card is bound over a context of its own
// (pcsc-lite serialises calls per context, so a Wait must not share one with card I/O):
// connect, cards.Bind (one driver Open, usually 3–5 APDUs), and once per reader
// attachment the PC/SC part 10 feature request (a reader control call, no APDU) for
// PIN-pad detection. Nothing else talks to the card. A bind runs in a goroutine of its
// own, but for those of Start's read: the watcher's first read and its binds (the last
// of them, with several cards) run in Start's goroutine, and Close lets the cards go in
// its own. Their caller came in through a cgo export (C_Initialize, C_Finalize) and is
// locked to its thread: every goroutine it waited for would cost two hand-offs between
// threads, and threads the Go scheduler sets spinning meanwhile take the CPU from pcscd.
//
// Rescan (C_GetSlotList) reads the reader states itself, through the watcher's listing
// context (a SharedContext: package pcsc keeps the Wait on a PC/SC context apart, so the
// watcher stays in its Wait; about 2 PC/SC calls and under a millisecond, no card I/O),
// applies them and waits for the binds they start, so the table answers for the moment
// of the call. A read begun less than Options.Fresh (10ms) before stands for one: an
// application lists the slots right after C_Initialize, and often twice or more in a
// row. Start waits for the watcher's first read and its binds before returning. Reads are numbered
// and a read older than one already applied is dropped, so the watcher and concurrent
// Rescans never move the table backwards. With pcscd down, Start and Rescan return nil with an empty table; the watcher
// tries the service again after 50ms, then at doubling intervals up to
// Options.RetryInterval, and on each Rescan.
//
// Failed binds: an unrecognised card, a malformed answer or a driver panic (in Open or
// in the token's Info) is final for that insertion; other errors (a transmission error,
// a sharing violation, a bind past Options.BindTimeout) are retried on Rescan, at most
// Options.MaxBindAttempts times. A mute card is bound once it answers. A
// card another application holds exclusively (ErrCardInUse) is not tried at all until a
// read shows the hold released (package pcsc's Wait does not wake for that, so it is
// the next Rescan), and then afresh.
//
// # Change notification
//
// Every change of the table advances a counter (≥ 1). Changes returns a channel closed at
// the next change; WaitChange blocks until the counter passes a given value (0 returns
// the current counter at once, the start of a wait loop), or ctx ends, or Close runs
// (ErrClosed) — which is how C_Finalize wakes a thread in C_WaitForSlotEvent.
// SlotInfo.Changed tells which slots a change touched; AllSlots includes the slots of
// readers that left, whose token went with them.
//
// # Concurrency
//
// All methods are safe for concurrent use and return snapshots. No lock is held during a
// backend call. Goroutines start in Start and end in Close (cancel, then WaitGroup); each
// recovers its own panics (a panicking driver leaves its slot without token, a panicking
// backend counts as a lost service). Tokens are not safe for concurrent use: the engine
// serialises I/O per slot.
//
// # Backends
//
// Backend is the PC/SC seam: NewPCSC is pcsc-lite through package pcsc, and package
// slotmgrtest is a fake whose readers, cards and service are driven by method calls and
// whose waits wake over channels, for unit tests here and in the engine.
//
// # Limits
//
// A card reset by another application keeps its generation when the event counter does
// not move (the driver learns of it through Conn.Lock's reset flag). A backend without an
// event counter would miss a swap between reads with no empty state in between. PIN-pad
// detection asks the reader for its part 10 features (pcsc.Card.Features, or the raw
// CM_IOCTL_GET_FEATURE_REQUEST through a Controller); reading the PIN on the pad is the
// engine's and driver's business, with SlotInfo.PINVerify.
package slotmgr
