package core

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/p11-card/p11-card/apdu"
	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/slotmgr"
)

// Login states of an application on a token.
const (
	loginNone = iota
	loginUser
	loginSO
)

// tokenState is one application's view of one token generation.
type tokenState struct {
	slot    uint64
	gen     uint64
	reader  string
	tok     cards.Token
	info    cards.TokenInfo
	pinPad  bool
	removed <-chan struct{}

	io   sync.Mutex // serialises card I/O on this token
	pins pinStatus  // guarded by io

	mechOnce sync.Once
	mechs    map[uint64]MechInfo // see Module.mechanisms

	// Guarded by Module.mu.
	login   int
	pin     []byte            // the user PIN, only with Options.PINCache while logged in
	handles map[string]uint64 // token object handle → object handle
	dead    bool
}

// gone reports whether the token generation has ended (card removed or swapped).
func (ts *tokenState) gone(src SlotSource) bool {
	if ts.removed != nil {
		select {
		case <-ts.removed:
			return true
		default:
			return false
		}
	}
	cur, ok := src.Slot(ts.slot)
	return !ok || !cur.Present || cur.Gen != ts.gen
}

// SlotList lists slot IDs: all readers, or only those with a token. sizeQuery says the
// application passed no buffer.
func (m *Module) SlotList(tokenPresent, sizeQuery bool) ([]uint64, error) {
	src, ctx, err := m.state()
	if err != nil {
		return nil, err
	}
	// A size query looks at the readers again, which retries binds that failed. The
	// listing that follows it answers from the same view, so that count and list agree
	// unless a card came or went in between (then CKR_BUFFER_TOO_SMALL, PKCS #11 2.40
	// §5.5); a listing with no size query before it looks again itself.
	if sizeQuery || !m.sizeQueried.Swap(false) {
		if err := src.Rescan(ctx); err != nil && !errors.Is(err, context.Canceled) {
			logf("rescan: %v", err) // pcscd down: no slots, not an error
		}
	}
	if sizeQuery {
		m.sizeQueried.Store(true)
	}
	var ids []uint64
	for _, s := range src.Slots() {
		if tokenPresent && !s.Present {
			continue
		}
		ids = append(ids, s.ID)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// SlotInfo is CK_SLOT_INFO's content.
type SlotInfo struct {
	Description  string
	Manufacturer string
	Flags        uint64
	Firmware     cards.Version
}

// SlotInfo describes a reader.
func (m *Module) SlotInfo(id uint64) (SlotInfo, error) {
	src, _, err := m.state()
	if err != nil {
		return SlotInfo{}, err
	}
	s, ok := src.Slot(id)
	if !ok || s.ReaderGone {
		return SlotInfo{}, errRV(CKR_SLOT_ID_INVALID, "no such slot")
	}
	si := SlotInfo{Description: s.Reader, Manufacturer: "PC/SC", Flags: CKF_REMOVABLE_DEVICE | CKF_HW_SLOT}
	if s.Present {
		si.Flags |= CKF_TOKEN_PRESENT
	}
	return si, nil
}

// token returns the application's state for the token in slot id, starting a fresh one
// when the card generation changed.
func (m *Module) token(id uint64) (*tokenState, error) {
	src, _, err := m.state()
	if err != nil {
		return nil, err
	}
	s, ok := src.Slot(id)
	if ok && !s.ReaderGone && (!s.Present || s.Token == nil) {
		// A card may have arrived since the slot manager last looked, or be binding:
		// look again (Rescan waits for the binds it starts).
		if _, ctx, err := m.state(); err == nil {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := src.Rescan(rctx); err != nil {
				logf("rescan: %v", err)
			}
			cancel()
			s, ok = src.Slot(id)
		}
	}
	if !ok || s.ReaderGone {
		return nil, errRV(CKR_SLOT_ID_INVALID, "no such slot")
	}
	if !s.Present || s.Token == nil {
		if s.CardPresent && s.Err != nil && errors.Is(s.Err, cards.ErrNotRecognized) {
			return nil, errRV(CKR_TOKEN_NOT_RECOGNIZED, "card not recognized")
		}
		return nil, errRV(CKR_TOKEN_NOT_PRESENT, "no token")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.initialized {
		return nil, errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "not initialized")
	}
	if ts := m.tokens[id]; ts != nil {
		if ts.gen == s.Gen && !ts.dead {
			return ts, nil
		}
		m.dropTokenLocked(ts)
	}
	info := s.Token.Info()
	ts := &tokenState{slot: id, gen: s.Gen, reader: s.Reader, tok: s.Token, info: info,
		pinPad: s.PINPad, removed: s.Removed, handles: map[string]uint64{}, pins: openedPINs(s.Token, info)}
	m.tokens[id] = ts
	return ts, nil
}

// InitToken answers C_InitToken: after the slot checks (CKR_SLOT_ID_INVALID,
// CKR_TOKEN_NOT_PRESENT), CKR_FUNCTION_NOT_SUPPORTED. Re-initialising a card (erasing its
// keys) is a vendor tool's job, not Cryptoki's here.
func (m *Module) InitToken(slot uint64) error {
	if _, err := m.token(slot); err != nil {
		return err
	}
	return errRV(CKR_FUNCTION_NOT_SUPPORTED, "C_InitToken is not supported")
}

// dropTokenLocked forgets a token generation: its sessions, objects and login state.
func (m *Module) dropTokenLocked(ts *tokenState) {
	ts.dead = true
	ts.login = loginNone
	clear(ts.pin)
	ts.pin = nil
	for h, s := range m.sessions {
		if s.ts == ts {
			s.closed.Store(true)
			delete(m.sessions, h)
		}
	}
	for h, o := range m.objects {
		if o.ts == ts {
			delete(m.objects, h)
		}
	}
	if m.tokens[ts.slot] == ts {
		delete(m.tokens, ts.slot)
	}
}

// TokenInfo is CK_TOKEN_INFO's content.
type TokenInfo struct {
	Label, Manufacturer, Model, Serial string
	Flags                              uint64
	SessionCount, RWSessionCount       uint64
	MinPIN, MaxPIN                     uint64
	Firmware                           cards.Version
}

// TokenInfo describes the token in slot id, PIN state included (read from the card).
func (m *Module) TokenInfo(id uint64) (TokenInfo, error) {
	ts, err := m.token(id)
	if err != nil {
		return TokenInfo{}, err
	}
	in := ts.info
	ti := TokenInfo{Label: in.Label, Manufacturer: in.Manufacturer, Model: in.Model, Serial: in.Serial,
		MinPIN: uint64(max(in.PINMin, 0)), MaxPIN: uint64(max(in.PINMax, 0)), Firmware: in.Firmware}
	ti.Flags = CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED
	if in.HasRandom {
		ti.Flags |= CKF_RNG
	}
	if ts.pinPad {
		ti.Flags |= CKF_PROTECTED_AUTHENTICATION_PATH
	}
	var p pinStatus
	err = m.ioPINs(ts, func(ctx context.Context, tok cards.Token) error {
		if p = ts.pins; !p.at.IsZero() && time.Since(p.at) < pinStatusFresh {
			return nil
		}
		at := time.Now()
		roles := pinRoles(in)
		both, ok := tok.(cards.PINStatuses)
		switch {
		case len(roles) == 1:
			st, err := tok.PINStatus(ctx, cards.RoleUser)
			p = statusOf(roles, []cards.PINStatus{st}, err)
		case ok:
			st, err := both.PINStatuses(ctx, roles...)
			p = statusOf(roles, st, err)
		default:
			p = pinStatus{}
			p.user, p.uerr = tok.PINStatus(ctx, cards.RoleUser)
			p.so, p.serr = tok.PINStatus(ctx, cards.RoleSO)
		}
		p.at = at
		if p.uerr == nil && (p.serr == nil || errors.Is(p.serr, cards.ErrNotSupported)) {
			ts.pins = p
		}
		return nil
	})
	if err != nil {
		return TokenInfo{}, err
	}
	user, uerr, so, serr := p.user, p.uerr, p.so, p.serr
	if uerr == nil {
		ti.Flags |= pinFlags(user, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED, CKF_USER_PIN_TO_BE_CHANGED)
	} else if errors.Is(uerr, slotmgr.ErrTokenRemoved) {
		return TokenInfo{}, errRV(CKR_DEVICE_REMOVED, "token removed")
	}
	if serr == nil {
		ti.Flags |= pinFlags(so, CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED, CKF_SO_PIN_TO_BE_CHANGED)
	}
	m.mu.RLock()
	for _, s := range m.sessions {
		if s.ts == ts {
			ti.SessionCount++
			if s.rw {
				ti.RWSessionCount++
			}
		}
	}
	m.mu.RUnlock()
	return ti, nil
}

func pinFlags(p cards.PINStatus, low, final, locked, change uint64) uint64 {
	var f uint64
	switch {
	case p.Blocked || p.Retries == 0:
		f |= locked
	case p.Retries == 1:
		f |= final | low
	case p.Retries > 0 && p.MaxRetries > 0 && p.Retries < p.MaxRetries:
		f |= low
	}
	if p.Default {
		f |= change
	}
	return f
}

// pinStatus is what TokenInfo (or the token's Open, openedPINs) read of the PINs, kept
// for pinStatusFresh: applications ask for CK_TOKEN_INFO several times in a row
// (pkcs11-tool twice before it signs, NSS at every slot event), and each reading is a
// card transaction. Reading objects and logging out keep it; a login updates it
// (afterLogin); any other operation on the token drops it, as it may have changed a PIN's
// state. Another application's wrong PIN shows within pinStatusFresh.
type pinStatus struct {
	user, so   cards.PINStatus
	uerr, serr error
	at         time.Time // zero: nothing kept
}

// afterLogin updates the kept status after a login as role: a right PIN resets its retry
// counter to the limit (ISO 7816-4 VERIFY, as PIV and OpenPGP cards do); after a failure,
// or with no limit known, the status is read again.
func (p *pinStatus) afterLogin(role cards.Role, err error) {
	st := &p.user
	if role == cards.RoleSO {
		st = &p.so
	}
	switch {
	case p.at.IsZero():
	case err == nil && st.MaxRetries > 0:
		st.Retries, st.Blocked = st.MaxRetries, false
	default:
		*p = pinStatus{}
	}
}

var pinStatusFresh = time.Second

// openedPINs is the status a token's Open read beside what it needed (cards.OpenedPINs),
// kept as TokenInfo would keep a reading of its own, if still fresh: the first
// C_GetTokenInfo after a card is bound then costs no transaction.
func openedPINs(tok cards.Token, info cards.TokenInfo) pinStatus {
	o, ok := tok.(cards.OpenedPINs)
	if !ok {
		return pinStatus{}
	}
	roles := pinRoles(info)
	st, at, ok := o.OpenedPINs(roles...)
	if !ok || len(st) != len(roles) || time.Since(at) >= pinStatusFresh {
		return pinStatus{}
	}
	p := statusOf(roles, st, nil)
	p.at = at
	return p
}

// pinRoles are the roles CK_TOKEN_INFO shows PIN states for: the user, and the SO when its
// secret is a PIN (a PIV management key has no counter).
func pinRoles(in cards.TokenInfo) []cards.Role {
	if in.SOSecret != "pin" {
		return []cards.Role{cards.RoleUser}
	}
	return []cards.Role{cards.RoleUser, cards.RoleSO}
}

// statusOf is the status one reading of roles' states (pinRoles, in order) gives; a SO
// without a PIN reads as not supported.
func statusOf(roles []cards.Role, st []cards.PINStatus, err error) pinStatus {
	if err == nil && len(st) != len(roles) {
		err = errRV(CKR_DEVICE_ERROR, "driver gave the wrong number of PIN states")
	}
	p := pinStatus{uerr: err, serr: err}
	if err == nil {
		p.user = st[0]
		if len(st) == 2 {
			p.so = st[1]
		}
	}
	if len(roles) == 1 {
		p.serr = cards.ErrNotSupported
	}
	return p
}

// io runs f on the token with the slot's I/O lock held (no table lock) and turns an error
// after the card left into CKR_DEVICE_REMOVED. The PIN status TokenInfo kept is dropped.
func (m *Module) io(ts *tokenState, f func(ctx context.Context, tok cards.Token) error) error {
	return m.ioPINs(ts, func(ctx context.Context, tok cards.Token) error {
		ts.pins = pinStatus{}
		return f(ctx, tok)
	})
}

// ioPINs is io leaving the kept PIN status to f: TokenInfo reads it, object listings and
// logouts leave it as it is (no PIN counter changes), logins update it.
func (m *Module) ioPINs(ts *tokenState, f func(ctx context.Context, tok cards.Token) error) error {
	src, _, err := m.state()
	if err != nil {
		return err
	}
	ctx, cancel, err := m.opCtx()
	if err != nil {
		return err
	}
	defer cancel()
	ts.io.Lock()
	err = func() error {
		defer ts.io.Unlock()
		if ts.gone(src) {
			return errRV(CKR_DEVICE_REMOVED, "token removed")
		}
		return f(ctx, ts.tok)
	}()
	if err != nil && ts.goneAfter(ctx, src, err) {
		return errRV(CKR_DEVICE_REMOVED, "token removed during the operation")
	}
	return err
}

// keyOpFailed notes a private-key operation's failure: when the card says the user is
// not logged in although the application is (another application reset the card or
// logged it out), the application is logged out too, or it could never log in again
// (CKR_USER_ALREADY_LOGGED_IN).
func (m *Module) keyOpFailed(ts *tokenState, err error) error {
	if err != nil && RV(err) == CKR_USER_NOT_LOGGED_IN {
		m.mu.Lock()
		if ts.login == loginUser && !ts.dead {
			logf("card lost the login state; application logged out")
			m.logoutLocked(ts)
		}
		m.mu.Unlock()
	}
	return err
}

// keyOp runs a private-key operation; with the PIN cache on, a card that forgot the
// login is logged in again once and the operation repeated.
func (m *Module) keyOp(ts *tokenState, f func(ctx context.Context, tok cards.Token) error) error {
	err := m.io(ts, f)
	if err == nil || RV(err) != CKR_USER_NOT_LOGGED_IN {
		return err
	}
	m.mu.RLock()
	pin := append([]byte(nil), ts.pin...)
	cached := ts.login == loginUser && ts.pin != nil
	m.mu.RUnlock()
	defer clear(pin)
	if !cached {
		return m.keyOpFailed(ts, err)
	}
	logf("card lost the login state; logging in again with the cached PIN")
	if lerr := m.io(ts, func(ctx context.Context, tok cards.Token) error {
		return tok.Login(ctx, cards.RoleUser, pin)
	}); lerr != nil {
		m.mu.Lock()
		if ts.login == loginUser && !ts.dead {
			m.logoutLocked(ts) // wipes the cache: never a second try
		}
		m.mu.Unlock()
		return lerr
	}
	return m.keyOpFailed(ts, m.io(ts, f))
}

// removalSettle bounds how long a transport failure waits for the slot manager to tell
// whether the card left (a reader reports the removal a moment after the I/O fails).
const removalSettle = 750 * time.Millisecond

// goneAfter tells whether the token left, given that an operation failed with err. A
// failure of the transport (not a status word from the card) asks the slot source to
// look again and waits briefly for the verdict.
func (ts *tokenState) goneAfter(ctx context.Context, src SlotSource, err error) bool {
	if ts.gone(src) {
		return true
	}
	if rv := RV(err); rv != CKR_DEVICE_ERROR && rv != CKR_FUNCTION_FAILED {
		return false
	}
	var se *apdu.StatusError
	if errors.As(err, &se) {
		return false
	}
	if rerr := src.Rescan(ctx); rerr != nil {
		logf("rescan after %v: %v", err, rerr)
	}
	if ts.removed == nil {
		return ts.gone(src)
	}
	t := time.NewTimer(removalSettle)
	defer t.Stop()
	select {
	case <-ts.removed:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return ts.gone(src)
	}
}

// WaitForSlotEvent returns the next slot whose token came or went since the last report.
func (m *Module) WaitForSlotEvent(dontBlock bool) (uint64, error) {
	var since uint64
	for {
		src, ctx, err := m.state()
		if err != nil {
			return 0, err
		}
		if since == 0 {
			if since, err = src.WaitChange(ctx, 0); err != nil {
				return 0, m.waitErr(err)
			}
		}
		if id, ok := m.nextEvent(src); ok {
			return id, nil
		}
		if dontBlock {
			return 0, errRV(CKR_NO_EVENT, "no event")
		}
		if since, err = src.WaitChange(ctx, since); err != nil {
			return 0, m.waitErr(err)
		}
	}
}

func (m *Module) waitErr(err error) error {
	if !m.Initialized() || errors.Is(err, context.Canceled) || errors.Is(err, slotmgr.ErrClosed) {
		return errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "finalized while waiting")
	}
	return err
}

func (m *Module) nextEvent(src SlotSource) (uint64, bool) {
	slots := src.Slots()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.initialized {
		return 0, false
	}
	for _, s := range slots {
		var g uint64
		if s.Present {
			g = s.Gen
		}
		if m.seen[s.ID] != g {
			m.seen[s.ID] = g
			return s.ID, true
		}
	}
	return 0, false
}
