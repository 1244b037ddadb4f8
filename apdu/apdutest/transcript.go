package apdutest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exchange is one command/response pair of a transcript.
type Exchange struct {
	Cmd  []byte
	Any  []bool // Any[i]: Cmd[i] matches any byte (".." in the transcript); nil if none
	Resp []byte
	Line int // line of the command in the transcript, 0 if not from a file
}

// Match reports whether cmd matches the expected command, and the first differing index
// (len of the shorter when the lengths differ), or -1 on a match.
func (e Exchange) Match(cmd []byte) (bool, int) {
	n := min(len(cmd), len(e.Cmd))
	for i := 0; i < n; i++ {
		if cmd[i] != e.Cmd[i] && (e.Any == nil || !e.Any[i]) {
			return false, i
		}
	}
	if len(cmd) != len(e.Cmd) {
		return false, n
	}
	return true, -1
}

// ErrSyntax wraps every transcript parse error.
var ErrSyntax = errors.New("apdutest: transcript syntax")

// Parse reads a transcript. name is used in error messages.
func Parse(r io.Reader, name string) ([]Exchange, error) {
	var out []Exchange
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	pending := false
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		kind, rest := s[0], s[1:]
		switch kind {
		case '>':
			if pending {
				return nil, fmt.Errorf("%w: %s:%d: command without a response before it", ErrSyntax, name, line)
			}
			b, anyb, err := parseHex(rest, true)
			if err != nil {
				return nil, fmt.Errorf("%w: %s:%d: %v", ErrSyntax, name, line, err)
			}
			if len(b) < 4 {
				return nil, fmt.Errorf("%w: %s:%d: command of %d bytes", ErrSyntax, name, line, len(b))
			}
			out = append(out, Exchange{Cmd: b, Any: anyb, Line: line})
			pending = true
		case '<':
			if !pending {
				return nil, fmt.Errorf("%w: %s:%d: response without a command", ErrSyntax, name, line)
			}
			b, _, err := parseHex(rest, false)
			if err != nil {
				return nil, fmt.Errorf("%w: %s:%d: %v", ErrSyntax, name, line, err)
			}
			if len(b) < 2 {
				return nil, fmt.Errorf("%w: %s:%d: response of %d bytes (no status word)", ErrSyntax, name, line, len(b))
			}
			out[len(out)-1].Resp = b
			pending = false
		default:
			return nil, fmt.Errorf("%w: %s:%d: line starts with %q, want '#', '>' or '<'", ErrSyntax, name, line, kind)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("apdutest: reading %s: %w", name, err)
	}
	if pending {
		return nil, fmt.Errorf("%w: %s: last command has no response", ErrSyntax, name)
	}
	return out, nil
}

func parseHex(s string, wildcards bool) ([]byte, []bool, error) {
	s = strings.Join(strings.Fields(s), "")
	if len(s)%2 != 0 {
		return nil, nil, fmt.Errorf("odd number of hex digits")
	}
	b := make([]byte, len(s)/2)
	var anyb []bool
	for i := range b {
		p := s[2*i : 2*i+2]
		if p == ".." {
			if !wildcards {
				return nil, nil, fmt.Errorf("'..' is only allowed in commands")
			}
			if anyb == nil {
				anyb = make([]bool, len(b))
			}
			anyb[i] = true
			continue
		}
		hi, ok1 := unhex(p[0])
		lo, ok2 := unhex(p[1])
		if !ok1 || !ok2 {
			return nil, nil, fmt.Errorf("bad hex byte %q", p)
		}
		b[i] = hi<<4 | lo
	}
	return b, anyb, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// hexAny formats bytes as spaced upper-case hex, ".." where anyb is set.
func hexAny(b []byte, anyb []bool) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		if anyb != nil && i < len(anyb) && anyb[i] {
			sb.WriteString("..")
		} else {
			fmt.Fprintf(&sb, "%02X", c)
		}
	}
	return sb.String()
}

// Format writes exchanges as a transcript that Parse reads back.
func Format(w io.Writer, ex []Exchange) error {
	var buf bytes.Buffer
	for _, e := range ex {
		fmt.Fprintf(&buf, "> %s\n< %s\n", hexAny(e.Cmd, e.Any), hexAny(e.Resp, nil))
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// diff renders want and got one above the other with carets under the first difference.
func diff(want Exchange, got []byte, at int) string {
	w := hexAny(want.Cmd, want.Any)
	g := hexAny(got, nil)
	return fmt.Sprintf("  want %s\n  got  %s\n       %s^^", w, g, strings.Repeat(" ", 3*at))
}
