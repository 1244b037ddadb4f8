package apdutest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/p11-card/p11-card/apdu"
)

// DefaultTestPIN replaces PIN data in recorded transcripts.
const DefaultTestPIN = "123456"

// Recorder passes commands to a Transmitter and records the exchanges.
type Recorder struct {
	next apdu.Transmitter
	pin  []byte

	mu    sync.Mutex
	lines []string
	ex    int
}

// NewRecorder records what passes through t. testPIN (DefaultTestPIN if empty) replaces
// PIN data; see Sanitize.
func NewRecorder(t apdu.Transmitter, testPIN string) *Recorder {
	if testPIN == "" {
		testPIN = DefaultTestPIN
	}
	return &Recorder{next: t, pin: []byte(testPIN)}
}

// Transmit forwards cmd and records the sanitized command and the response. An error
// from the wrapped Transmitter is recorded as a comment and returned.
func (r *Recorder) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	resp, err := r.next.Transmit(ctx, cmd)
	e := Sanitize(cmd, r.pin)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.lines = append(r.lines, fmt.Sprintf("# > %s: error: %v", hexAny(e.Cmd, e.Any), err))
		return nil, err
	}
	r.lines = append(r.lines, "> "+hexAny(e.Cmd, e.Any), "< "+hexAny(resp, nil))
	r.ex++
	return resp, nil
}

// Lock forwards to the wrapped Transmitter's Lock when it has one (cards.Conn), else it
// is a no-op lock. A reset is noted in the transcript as a comment.
func (r *Recorder) Lock(ctx context.Context) (func(), bool, error) {
	l, ok := r.next.(interface {
		Lock(context.Context) (func(), bool, error)
	})
	if !ok {
		return func() {}, false, nil
	}
	unlock, reset, err := l.Lock(ctx)
	if err == nil && reset {
		r.Comment("card was reset")
	}
	return unlock, reset, err
}

// Comment adds a '#' line (one per line of the text).
func (r *Recorder) Comment(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range strings.Split(s, "\n") {
		r.lines = append(r.lines, "# "+l)
	}
}

// Len is the number of exchanges recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ex
}

// WriteTo writes the transcript.
func (r *Recorder) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	var b bytes.Buffer
	for _, l := range r.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	r.mu.Unlock()
	return b.WriteTo(w)
}

// Save writes the transcript to path.
func (r *Recorder) Save(path string) error {
	var b bytes.Buffer
	if _, err := r.WriteTo(&b); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

const (
	insVerify            = 0x20 // ISO/IEC 7816-4 §7.5.6
	insChangeRefData     = 0x24 // ISO/IEC 7816-4 §7.5.7
	insResetRetryCounter = 0x2C // ISO/IEC 7816-4 §7.5.10
)

// Sanitize makes an encoded command safe to commit. For VERIFY, CHANGE REFERENCE DATA and
// RESET RETRY COUNTER every run of data bytes other than FF (the PIV pad byte) becomes the
// test PIN, repeated or cut to the run's length: a 6-digit PIN recorded against a card
// whose PIN is another 6-digit PIN reads as the test PIN, so replaying with the test PIN
// matches. Other commands whose data is secret (apdu.Secret) get ".." wildcards for their
// data. Everything else is kept. A secret command that does not parse keeps its header and
// wildcards the rest.
func Sanitize(cmd []byte, testPIN []byte) Exchange {
	out := Exchange{Cmd: append([]byte(nil), cmd...)}
	if !apdu.Secret(cmd) {
		return out
	}
	off, n := 4, len(cmd)-4
	pinCmd := false
	if c, err := apdu.ParseCommand(cmd); err == nil {
		n = len(c.Data)
		off = 5
		if len(cmd) > 5 && cmd[4] == 0 {
			off = 7
		}
		switch cmd[1] {
		case insVerify, insChangeRefData, insResetRetryCounter:
			pinCmd = len(testPIN) > 0
		}
	}
	data := out.Cmd[off : off+n]
	if pinCmd {
		j := 0
		for i, c := range data {
			if c == 0xFF {
				j = 0
				continue
			}
			data[i] = testPIN[j%len(testPIN)]
			j++
		}
		return out
	}
	out.Any = make([]bool, len(out.Cmd))
	for i := off; i < off+n; i++ {
		out.Cmd[i] = 0
		out.Any[i] = true
	}
	return out
}
