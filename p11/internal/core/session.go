package core

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/p11-card/p11-card/cards"
)

// session is one Cryptoki session.
type session struct {
	h      uint64
	ts     *tokenState
	rw     bool
	closed atomic.Bool

	mu   sync.Mutex // operation state; held during the session's card I/O
	op   *operation
	find *finder
}

// OpenSession opens a session on the token in slot id (CKF_RW_SESSION in flags for R/W).
func (m *Module) OpenSession(slot uint64, flags uint64) (uint64, error) {
	if _, _, err := m.state(); err != nil {
		return 0, err
	}
	if flags&CKF_SERIAL_SESSION == 0 {
		return 0, errRV(CKR_SESSION_PARALLEL_NOT_SUPPORTED, "CKF_SERIAL_SESSION not set")
	}
	ts, err := m.token(slot)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.initialized {
		return 0, errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "finalized")
	}
	if ts.dead {
		return 0, errRV(CKR_DEVICE_REMOVED, "token removed")
	}
	rw := flags&CKF_RW_SESSION != 0
	if !rw && ts.login == loginSO {
		return 0, errRV(CKR_SESSION_READ_WRITE_SO_EXISTS, "SO logged in")
	}
	s := &session{h: m.handle(), ts: ts, rw: rw}
	m.sessions[s.h] = s
	return s.h, nil
}

// sess finds a live session; a session whose token left is dropped with its siblings.
func (m *Module) sess(h uint64) (*session, error) {
	m.mu.RLock()
	if !m.initialized {
		m.mu.RUnlock()
		return nil, errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "not initialized")
	}
	s := m.sessions[h]
	src := m.src
	m.mu.RUnlock()
	if s == nil || s.closed.Load() {
		return nil, errRV(CKR_SESSION_HANDLE_INVALID, "no such session")
	}
	if s.ts.gone(src) {
		m.mu.Lock()
		m.dropTokenLocked(s.ts)
		m.mu.Unlock()
		return nil, errRV(CKR_SESSION_HANDLE_INVALID, "token removed")
	}
	return s, nil
}

// CloseSession closes a session, destroying its session objects; closing an application's
// last session on a token logs it out.
func (m *Module) CloseSession(h uint64) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	m.mu.Lock()
	last := m.closeLocked(s)
	m.mu.Unlock()
	if last {
		m.cardLogout(s.ts)
	}
	return nil
}

// closeLocked removes s; it reports whether it was the last session of a logged-in token.
func (m *Module) closeLocked(s *session) bool {
	if _, ok := m.sessions[s.h]; !ok {
		return false
	}
	s.closed.Store(true)
	delete(m.sessions, s.h)
	for h, o := range m.objects {
		if o.owner == s {
			delete(m.objects, h)
		}
	}
	for _, o := range m.sessions {
		if o.ts == s.ts {
			return false
		}
	}
	if s.ts.login != loginNone {
		m.logoutLocked(s.ts)
		return true
	}
	return false
}

// CloseAllSessions closes every session of the application on the token in slot id.
func (m *Module) CloseAllSessions(slot uint64) error {
	src, _, err := m.state()
	if err != nil {
		return err
	}
	if _, ok := src.Slot(slot); !ok {
		return errRV(CKR_SLOT_ID_INVALID, "no such slot")
	}
	m.mu.Lock()
	var lastTS *tokenState
	for _, s := range m.sessions {
		if s.ts.slot == slot {
			if m.closeLocked(s) {
				lastTS = s.ts
			}
		}
	}
	m.mu.Unlock()
	if lastTS != nil {
		m.cardLogout(lastTS)
	}
	return nil
}

// SessionInfo is CK_SESSION_INFO's content.
type SessionInfo struct {
	Slot, State, Flags uint64
}

// SessionInfo describes a session.
func (m *Module) SessionInfo(h uint64) (SessionInfo, error) {
	s, err := m.sess(h)
	if err != nil {
		return SessionInfo{}, err
	}
	m.mu.RLock()
	login := s.ts.login
	m.mu.RUnlock()
	si := SessionInfo{Slot: s.ts.slot, Flags: CKF_SERIAL_SESSION}
	if s.rw {
		si.Flags |= CKF_RW_SESSION
	}
	switch {
	case login == loginSO:
		si.State = CKS_RW_SO_FUNCTIONS
	case login == loginUser && s.rw:
		si.State = CKS_RW_USER_FUNCTIONS
	case login == loginUser:
		si.State = CKS_RO_USER_FUNCTIONS
	case s.rw:
		si.State = CKS_RW_PUBLIC_SESSION
	default:
		si.State = CKS_RO_PUBLIC_SESSION
	}
	return si, nil
}

// Login logs the application in on the session's token (CKU_SO, CKU_USER), or gives the
// PIN for the session's current operation (CKU_CONTEXT_SPECIFIC). A nil pin means the
// reader's PIN pad. The pin is not kept beyond the call, except a context-specific one,
// which lives in the operation until it ends.
func (m *Module) Login(h uint64, userType uint64, pin []byte) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	ts := s.ts
	if pin == nil && !ts.pinPad {
		return errRV(CKR_ARGUMENTS_BAD, "no PIN and no PIN pad")
	}
	switch userType {
	case CKU_CONTEXT_SPECIFIC:
		return m.contextLogin(s, pin)
	case CKU_USER, CKU_SO:
	default:
		return errRV(CKR_USER_TYPE_INVALID, "bad user type")
	}
	m.mu.RLock()
	cur := ts.login
	roExists := false
	for _, o := range m.sessions {
		if o.ts == ts && !o.rw {
			roExists = true
		}
	}
	m.mu.RUnlock()
	want, role := loginUser, cards.RoleUser
	if userType == CKU_SO {
		want, role = loginSO, cards.RoleSO
	}
	switch {
	case cur == want:
		return errRV(CKR_USER_ALREADY_LOGGED_IN, "already logged in")
	case cur != loginNone:
		return errRV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "another user logged in")
	case want == loginSO && roExists:
		return errRV(CKR_SESSION_READ_ONLY_EXISTS, "read-only session open")
	}
	if err := m.ioPINs(ts, func(ctx context.Context, tok cards.Token) error {
		err := tok.Login(ctx, role, pin)
		ts.pins.afterLogin(role, err)
		return err
	}); err != nil {
		return heldTo(err, loginFailures)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ts.dead {
		return errRV(CKR_DEVICE_REMOVED, "token removed")
	}
	if ts.login == want {
		return errRV(CKR_USER_ALREADY_LOGGED_IN, "already logged in")
	}
	ts.login = want
	if want == loginUser && m.opts.PINCache && pin != nil {
		ts.pin = append([]byte(nil), pin...)
	}
	return nil
}

func (m *Module) contextLogin(s *session, pin []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.op
	if op == nil || op.key == nil || op.key.Key == nil || !op.key.Key.AlwaysAuth {
		return errRV(CKR_OPERATION_NOT_INITIALIZED, "no operation needs a context-specific login")
	}
	// Verify now so a wrong PIN is reported here; the operation repeats the VERIFY in its
	// own card transaction, so no other operation can use this authorisation. With a PIN
	// pad (nil) the user types the PIN once, for the operation itself.
	if pin != nil {
		if err := m.ioPINs(s.ts, func(ctx context.Context, tok cards.Token) error {
			err := tok.Login(ctx, cards.RoleUser, pin)
			s.ts.pins.afterLogin(cards.RoleUser, err)
			return err
		}); err != nil {
			return heldTo(err, loginFailures)
		}
	}
	op.setAuth(pin)
	return nil
}

// Logout logs the application out of the session's token.
func (m *Module) Logout(h uint64) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if s.ts.login == loginNone {
		m.mu.Unlock()
		return errRV(CKR_USER_NOT_LOGGED_IN, "not logged in")
	}
	m.logoutLocked(s.ts)
	m.mu.Unlock()
	m.cardLogout(s.ts)
	return nil
}

// logoutLocked drops the login state: handles of private objects become invalid and
// private session objects are destroyed.
func (m *Module) logoutLocked(ts *tokenState) {
	ts.login = loginNone
	clear(ts.pin)
	ts.pin = nil
	for h, o := range m.objects {
		if o.ts == ts && o.private {
			delete(m.objects, h)
			if o.th != "" {
				delete(ts.handles, o.th)
			}
		}
	}
}

// cardLogout drops the card's security state (best effort: the card may be gone). No
// PIN's counter changes: the PIN status TokenInfo read stays.
func (m *Module) cardLogout(ts *tokenState) {
	if err := m.ioPINs(ts, func(ctx context.Context, tok cards.Token) error { return tok.Logout(ctx) }); err != nil {
		logf("logout: %v", err)
	}
}

// SetPIN changes the PIN of the logged-in user (the SO's when the SO is logged in).
func (m *Module) SetPIN(h uint64, old, new []byte) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	if !s.rw {
		return errRV(CKR_SESSION_READ_ONLY, "read-only session")
	}
	if (old == nil || new == nil) && !s.ts.pinPad {
		return errRV(CKR_ARGUMENTS_BAD, "no PIN and no PIN pad")
	}
	m.mu.RLock()
	role := cards.RoleUser
	if s.ts.login == loginSO {
		role = cards.RoleSO
	}
	m.mu.RUnlock()
	return m.io(s.ts, func(ctx context.Context, tok cards.Token) error {
		return tok.ChangePIN(ctx, role, old, new)
	})
}

// InitPIN would set the user PIN from an SO session; a card needs the unblocking secret
// for that, which a Cryptoki SO login does not carry, so it is not supported (use
// `p11-card pin unblock`).
func (m *Module) InitPIN(h uint64, pin []byte) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	m.mu.RLock()
	login := s.ts.login
	m.mu.RUnlock()
	if login != loginSO {
		return errRV(CKR_USER_NOT_LOGGED_IN, "SO not logged in")
	}
	if !s.rw {
		return errRV(CKR_SESSION_READ_ONLY, "read-only session")
	}
	return errRV(CKR_FUNCTION_NOT_SUPPORTED, "C_InitPIN needs the card's unblocking secret")
}

// WithToken runs f on the token in slot id with the slot's I/O lock held (for the CLI:
// PIN unblock and other administration outside Cryptoki).
func (m *Module) WithToken(slot uint64, f func(ctx context.Context, tok cards.Token) error) error {
	ts, err := m.token(slot)
	if err != nil {
		return err
	}
	return m.io(ts, f)
}

// SessionCancel (3.0) abandons the session's active operations named by flags
// (CKF_SIGN, CKF_FIND_OBJECTS, …).
func (m *Module) SessionCancel(h uint64, flags uint64) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if flags&CKF_FIND_OBJECTS != 0 {
		s.find = nil
	}
	if op := s.op; op != nil {
		bit := map[opKind]uint64{opSign: CKF_SIGN, opVerify: CKF_VERIFY, opEncrypt: CKF_ENCRYPT, opDecrypt: CKF_DECRYPT,
			opDigest: CKF_DIGEST, opSignRecover: CKF_SIGN_RECOVER, opVerifyRecover: CKF_VERIFY_RECOVER}[op.kind]
		if flags&bit != 0 {
			s.endOp()
		}
	}
	return nil
}
