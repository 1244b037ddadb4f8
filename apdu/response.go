package apdu

import "fmt"

// Response is a response APDU: data field and status word (ISO/IEC 7816-4 §5.1).
type Response struct {
	Data []byte
	SW   SW
}

// ParseResponse splits a raw response into data and status word.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(b))
	}
	n := len(b) - 2
	return Response{Data: b[:n:n], SW: SW(b[n])<<8 | SW(b[n+1])}, nil
}

// Bytes encodes the response as a card sends it.
func (r Response) Bytes() []byte {
	out := make([]byte, 0, len(r.Data)+2)
	out = append(out, r.Data...)
	return append(out, byte(r.SW>>8), byte(r.SW))
}

// Err is nil when the status word reports success (9000), else the typed error for it.
func (r Response) Err() error { return r.SW.Err() }
