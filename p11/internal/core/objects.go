package core

import (
	"bytes"
	"context"
	"slices"

	"github.com/p11-card/p11-card/cards"
	"github.com/p11-card/p11-card/internal/cert"
)

// object is a handle's target: a token object (th set) or a session object (owner set).
type object struct {
	h       uint64
	ts      *tokenState
	th      string // token object handle ("9a/cert")
	id      []byte
	kind    cards.Kind
	private bool

	owner *session // session objects only
	attrs attrSet  // session objects only
}

// tokenObjects lists the card's objects matching f (drivers cache what they read).
func (m *Module) tokenObjects(ts *tokenState, f cards.Filter) ([]cards.Object, error) {
	var objs []cards.Object
	// Reading objects sends no PIN command: the PIN status TokenInfo read stays.
	err := m.ioPINs(ts, func(ctx context.Context, tok cards.Token) error {
		var err error
		objs, err = tok.Objects(ctx, f)
		return err
	})
	return objs, heldTo(err, listingFailures)
}

// handleLocked returns the handle of a token object, assigning one on first sight.
func (m *Module) handleLocked(ts *tokenState, o cards.Object) uint64 {
	if h, ok := ts.handles[o.Handle]; ok {
		if _, live := m.objects[h]; live {
			return h
		}
	}
	h := m.handle()
	m.objects[h] = &object{h: h, ts: ts, th: o.Handle, id: o.ID, kind: o.Kind, private: o.Private}
	ts.handles[o.Handle] = h
	return h
}

// visibleLocked tells whether the application may see an object now.
func visibleLocked(ts *tokenState, private bool) bool {
	return !private || ts.login == loginUser
}

// lookup finds an object reachable from session s; token objects come back with their
// current card description.
func (m *Module) lookup(s *session, h uint64) (*object, cards.Object, error) {
	m.mu.RLock()
	o := m.objects[h]
	ok := o != nil && o.ts == s.ts && visibleLocked(s.ts, o.private)
	m.mu.RUnlock()
	if !ok {
		return nil, cards.Object{}, errRV(CKR_OBJECT_HANDLE_INVALID, "no such object")
	}
	if o.owner != nil {
		return o, cards.Object{}, nil
	}
	objs, err := m.tokenObjects(s.ts, cards.Filter{ID: o.id, Kind: o.kind})
	if err != nil {
		return nil, cards.Object{}, err
	}
	for _, co := range objs {
		if co.Handle == o.th {
			return o, co, nil
		}
	}
	// The object left the card (deleted by another application).
	m.mu.Lock()
	delete(m.objects, h)
	if s.ts.handles[o.th] == h {
		delete(s.ts.handles, o.th)
	}
	m.mu.Unlock()
	return nil, cards.Object{}, errRV(CKR_OBJECT_HANDLE_INVALID, "object gone from the card")
}

// attrsOf computes a token object's attributes. want names the attributes the caller
// needs (nil: all): those that cost card reads of other objects (a key's CKA_SUBJECT from
// its certificate, a certificate's CKA_CERTIFICATE_CATEGORY) are read only when wanted.
func (m *Module) attrsOf(ts *tokenState, co cards.Object, want []uint64) attrSet {
	wanted := func(t uint64) bool { return want == nil || slices.Contains(want, t) }
	var mechs []uint64
	var subj []byte
	if co.Key != nil {
		mechs = keyMechanisms(ts, co.Key)
		if wanted(CKA_SUBJECT) {
			if certs, err := m.tokenObjects(ts, cards.Filter{ID: co.ID, Kind: cards.KindCertificate}); err == nil {
				for _, c := range certs {
					if bytes.Equal(c.ID, co.ID) {
						subj = tokenAttrs(c, "", nil, nil).v[CKA_SUBJECT]
						break
					}
				}
			}
		}
	}
	a := tokenAttrs(co, ts.info.Serial, mechs, subj)
	if co.Kind == cards.KindCertificate && wanted(CKA_CERTIFICATE_CATEGORY) {
		a.v[CKA_CERTIFICATE_CATEGORY] = EncodeULong(m.certCategory(ts, co))
	}
	return a
}

// attrTypes lists a template's types.
func attrTypes(tmpl []Attr) []uint64 {
	out := make([]uint64, len(tmpl))
	for i, a := range tmpl {
		out[i] = a.Type
	}
	return out
}

// certCategory is CKA_CERTIFICATE_CATEGORY: the token user's own certificate when the card
// holds its private key, an authority's when it is a CA certificate, else unspecified.
func (m *Module) certCategory(ts *tokenState, co cards.Object) uint64 {
	if len(co.ID) > 0 {
		if keys, err := m.tokenObjects(ts, cards.Filter{ID: co.ID, Kind: cards.KindPrivateKey}); err == nil {
			for _, k := range keys {
				if bytes.Equal(k.ID, co.ID) {
					return CK_CERTIFICATE_CATEGORY_TOKEN_USER
				}
			}
		}
	}
	if c, err := cert.Parse(co.Cert); err == nil && c.IsCA {
		return CK_CERTIFICATE_CATEGORY_AUTHORITY
	}
	return CK_CERTIFICATE_CATEGORY_UNSPECIFIED
}

// GetAttributeValue reads attributes of an object: one answer per requested type.
func (m *Module) GetAttributeValue(h, obj uint64, types []uint64) ([]AttrValue, error) {
	s, err := m.sess(h)
	if err != nil {
		return nil, err
	}
	o, co, err := m.lookup(s, obj)
	if err != nil {
		return nil, err
	}
	var a attrSet
	if o.owner != nil {
		m.mu.RLock()
		a = o.attrs
		m.mu.RUnlock()
	} else {
		a = m.attrsOf(s.ts, co, types)
	}
	out := make([]AttrValue, len(types))
	for i, t := range types {
		out[i] = a.get(t)
	}
	return out, nil
}

// ObjectSize is the total size of an object's readable attribute values.
func (m *Module) ObjectSize(h, obj uint64) (uint64, error) {
	s, err := m.sess(h)
	if err != nil {
		return 0, err
	}
	o, co, err := m.lookup(s, obj)
	if err != nil {
		return 0, err
	}
	a := o.attrs
	if o.owner == nil {
		a = m.attrsOf(s.ts, co, nil)
	}
	var n uint64
	for _, v := range a.v {
		n += uint64(len(v))
	}
	return n, nil
}

// finder is an active C_FindObjects search.
type finder struct {
	handles []uint64
}

// classKind maps a CKA_CLASS template value to a card object kind for the driver filter.
func classKind(tmpl []Attr) (cards.Kind, []byte, bool) {
	var kind cards.Kind
	var id []byte
	for _, t := range tmpl {
		switch t.Type {
		case CKA_CLASS:
			c, ok := DecodeULong(t.Value)
			if !ok {
				return 0, nil, false
			}
			switch c {
			case CKO_CERTIFICATE:
				kind = cards.KindCertificate
			case CKO_PUBLIC_KEY:
				kind = cards.KindPublicKey
			case CKO_PRIVATE_KEY:
				kind = cards.KindPrivateKey
			case CKO_DATA:
				kind = cards.KindData
			default:
				return 0, nil, false // no token object of that class
			}
		case CKA_ID:
			id = t.Value
		case CKA_TOKEN:
			if len(t.Value) == 1 && t.Value[0] == 0 {
				return 0, nil, false
			}
		}
	}
	return kind, id, true
}

// FindObjectsInit starts a search for objects matching tmpl.
func (m *Module) FindObjectsInit(h uint64, tmpl []Attr) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find != nil || s.op != nil {
		return errRV(CKR_OPERATION_ACTIVE, "operation active")
	}
	var found []uint64
	if kind, id, ok := classKind(tmpl); ok {
		objs, err := m.tokenObjects(s.ts, cards.Filter{ID: id, Kind: kind})
		if err != nil {
			return err
		}
		m.mu.RLock()
		login := s.ts.login
		m.mu.RUnlock()
		var match []cards.Object
		for _, co := range objs {
			if co.Private && login != loginUser {
				continue
			}
			if m.attrsOf(s.ts, co, attrTypes(tmpl)).matches(tmpl) {
				match = append(match, co)
			}
		}
		m.mu.Lock()
		if s.ts.dead {
			m.mu.Unlock()
			return errRV(CKR_DEVICE_REMOVED, "token removed")
		}
		for _, co := range match {
			found = append(found, m.handleLocked(s.ts, co))
		}
		m.mu.Unlock()
	}
	m.mu.RLock()
	for _, o := range m.objects {
		if o.owner != nil && o.ts == s.ts && visibleLocked(s.ts, o.private) && o.attrs.matches(tmpl) {
			found = append(found, o.h)
		}
	}
	m.mu.RUnlock()
	s.find = &finder{handles: found}
	return nil
}

// FindObjects returns up to max further handles of the search.
func (m *Module) FindObjects(h uint64, max int) ([]uint64, error) {
	s, err := m.sess(h)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find == nil {
		return nil, errRV(CKR_OPERATION_NOT_INITIALIZED, "no search")
	}
	n := min(max, len(s.find.handles))
	out := s.find.handles[:n:n]
	s.find.handles = s.find.handles[n:]
	return out, nil
}

// FindObjectsFinal ends the search.
func (m *Module) FindObjectsFinal(h uint64) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find == nil {
		return errRV(CKR_OPERATION_NOT_INITIALIZED, "no search")
	}
	s.find = nil
	return nil
}

// templateAttrs indexes a template, rejecting duplicates.
func templateAttrs(tmpl []Attr) (map[uint64][]byte, error) {
	m := make(map[uint64][]byte, len(tmpl))
	for _, a := range tmpl {
		if _, dup := m[a.Type]; dup {
			return nil, errRV(CKR_TEMPLATE_INCONSISTENT, "attribute given twice")
		}
		m[a.Type] = a.Value
	}
	return m, nil
}

func tmplBool(t map[uint64][]byte, typ uint64, def bool) (bool, error) {
	v, ok := t[typ]
	if !ok {
		return def, nil
	}
	if len(v) != 1 {
		return false, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "boolean attribute of wrong size")
	}
	return v[0] != 0, nil
}

func tmplULong(t map[uint64][]byte, typ uint64) (uint64, bool, error) {
	v, ok := t[typ]
	if !ok {
		return 0, false, nil
	}
	u, ok := DecodeULong(v)
	if !ok {
		return 0, false, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "CK_ULONG attribute of wrong size")
	}
	return u, true, nil
}

// CreateObject creates a session object, or on the card a certificate or an imported
// private key (whose key material in tmpl is wiped after the call).
func (m *Module) CreateObject(h uint64, tmpl []Attr) (uint64, error) {
	s, err := m.sess(h)
	if err != nil {
		return 0, err
	}
	t, err := templateAttrs(tmpl)
	if err != nil {
		return 0, err
	}
	class, ok, err := tmplULong(t, CKA_CLASS)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errRV(CKR_TEMPLATE_INCOMPLETE, "no CKA_CLASS")
	}
	onToken, err := tmplBool(t, CKA_TOKEN, false)
	if err != nil {
		return 0, err
	}
	private, err := tmplBool(t, CKA_PRIVATE, class == CKO_PRIVATE_KEY || class == CKO_SECRET_KEY)
	if err != nil {
		return 0, err
	}
	m.mu.RLock()
	login := s.ts.login
	m.mu.RUnlock()
	// A card's administrator (PIV management key) imports private keys: as with ykcs11,
	// an SO session may create a private key on the token, and nothing else private.
	soImport := onToken && class == CKO_PRIVATE_KEY && login == loginSO
	if private && login != loginUser && !soImport {
		return 0, errRV(CKR_USER_NOT_LOGGED_IN, "private objects need the user logged in")
	}
	if onToken {
		if !s.rw {
			return 0, errRV(CKR_SESSION_READ_ONLY, "read-only session")
		}
		return m.createTokenObject(s, class, t)
	}
	switch class {
	case CKO_DATA, CKO_CERTIFICATE, CKO_PUBLIC_KEY, CKO_SECRET_KEY:
	default:
		return 0, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "session objects of this class are not supported")
	}
	a := sessionAttrs(class, private, t)
	return m.addSessionObject(s, a, private)
}

// sessionAttrs completes a session object's template with the defaults.
func sessionAttrs(class uint64, private bool, t map[uint64][]byte) attrSet {
	a := attrSet{v: map[uint64][]byte{}, sensitive: map[uint64]bool{}}
	for k, v := range t {
		a.v[k] = append([]byte{}, v...)
	}
	def := func(k uint64, v []byte) {
		if _, ok := a.v[k]; !ok {
			a.v[k] = v
		}
	}
	a.v[CKA_CLASS] = EncodeULong(class)
	a.v[CKA_TOKEN] = ckBool(false)
	a.v[CKA_PRIVATE] = ckBool(private)
	def(CKA_LABEL, []byte{})
	def(CKA_MODIFIABLE, ckBool(true))
	def(CKA_COPYABLE, ckBool(true))
	def(CKA_DESTROYABLE, ckBool(true))
	switch class {
	case CKO_DATA:
		def(CKA_APPLICATION, []byte{})
		def(CKA_OBJECT_ID, []byte{})
		def(CKA_VALUE, []byte{})
	case CKO_CERTIFICATE:
		def(CKA_CERTIFICATE_TYPE, EncodeULong(CKC_X_509))
		def(CKA_TRUSTED, ckBool(false))
		def(CKA_ID, []byte{})
	case CKO_PUBLIC_KEY, CKO_SECRET_KEY:
		def(CKA_ID, []byte{})
		def(CKA_LOCAL, ckBool(false))
		def(CKA_DERIVE, ckBool(false))
	}
	if class == CKO_SECRET_KEY {
		def(CKA_KEY_TYPE, EncodeULong(CKK_GENERIC_SECRET))
		def(CKA_SENSITIVE, ckBool(false))
		def(CKA_EXTRACTABLE, ckBool(true))
		sens := a.v[CKA_SENSITIVE][0] != 0 || a.v[CKA_EXTRACTABLE][0] == 0
		a.v[CKA_ALWAYS_SENSITIVE] = ckBool(sens)
		a.v[CKA_NEVER_EXTRACTABLE] = ckBool(a.v[CKA_EXTRACTABLE][0] == 0)
		if v, ok := a.v[CKA_VALUE]; ok {
			a.v[CKA_VALUE_LEN] = EncodeULong(uint64(len(v)))
		}
		if sens {
			a.sensitive[CKA_VALUE] = true
		}
	}
	return a
}

func (m *Module) addSessionObject(s *session, a attrSet, private bool) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.initialized:
		return 0, errRV(CKR_CRYPTOKI_NOT_INITIALIZED, "finalized")
	case s.ts.dead || s.closed.Load():
		return 0, errRV(CKR_SESSION_HANDLE_INVALID, "session gone")
	}
	o := &object{h: m.handle(), ts: s.ts, owner: s, attrs: a, private: private}
	m.objects[o.h] = o
	return o.h, nil
}

// createTokenObject writes a certificate or imports a private key for a key location.
func (m *Module) createTokenObject(s *session, class uint64, t map[uint64][]byte) (uint64, error) {
	if class == CKO_PRIVATE_KEY {
		return m.importKey(s, t)
	}
	if class != CKO_CERTIFICATE {
		return 0, errRV(CKR_TEMPLATE_INCONSISTENT, "the card stores certificates and private keys only")
	}
	der, ok := t[CKA_VALUE]
	if !ok || len(der) == 0 {
		return 0, errRV(CKR_TEMPLATE_INCOMPLETE, "no CKA_VALUE")
	}
	id, ok := t[CKA_ID]
	if !ok || len(id) == 0 {
		return 0, errRV(CKR_TEMPLATE_INCOMPLETE, "no CKA_ID (it names the key location)")
	}
	if ct, ok, err := tmplULong(t, CKA_CERTIFICATE_TYPE); err != nil {
		return 0, err
	} else if ok && ct != CKC_X_509 {
		return 0, errRV(CKR_ATTRIBUTE_VALUE_INVALID, "only X.509 certificates")
	}
	if err := m.io(s.ts, func(ctx context.Context, tok cards.Token) error {
		return tok.WriteCertificate(ctx, id, der)
	}); err != nil {
		return 0, err
	}
	objs, err := m.tokenObjects(s.ts, cards.Filter{ID: id, Kind: cards.KindCertificate})
	if err != nil {
		return 0, err
	}
	for _, co := range objs {
		if bytes.Equal(co.ID, id) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if s.ts.dead {
				return 0, errRV(CKR_DEVICE_REMOVED, "token removed")
			}
			return m.handleLocked(s.ts, co), nil
		}
	}
	return 0, errRV(CKR_DEVICE_ERROR, "written certificate not found")
}

// DestroyObject destroys a session object, or deletes a certificate or data object from
// the card.
func (m *Module) DestroyObject(h, obj uint64) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	o, co, err := m.lookup(s, obj)
	if err != nil {
		return err
	}
	if o.owner != nil {
		m.mu.Lock()
		delete(m.objects, obj)
		m.mu.Unlock()
		return nil
	}
	if !s.rw {
		return errRV(CKR_SESSION_READ_ONLY, "read-only session")
	}
	if !co.Destroyable {
		return errRV(CKR_ACTION_PROHIBITED, "the card cannot delete this object")
	}
	if err := m.io(s.ts, func(ctx context.Context, tok cards.Token) error {
		return tok.DeleteObject(ctx, co.Handle)
	}); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.objects, obj)
	delete(s.ts.handles, co.Handle)
	m.mu.Unlock()
	return nil
}

// readOnlyAttrs can never change after creation.
var readOnlyAttrs = map[uint64]bool{CKA_CLASS: true, CKA_TOKEN: true, CKA_PRIVATE: true, CKA_KEY_TYPE: true,
	CKA_VALUE: true, CKA_CERTIFICATE_TYPE: true, CKA_LOCAL: true, CKA_ALWAYS_SENSITIVE: true,
	CKA_NEVER_EXTRACTABLE: true, CKA_MODIFIABLE: true, CKA_COPYABLE: true, CKA_DESTROYABLE: true,
	CKA_UNIQUE_ID: true, CKA_VALUE_LEN: true, CKA_KEY_GEN_MECHANISM: true}

// SetAttributeValue changes attributes. Session objects take any change but the fixed
// ones (and never weaken CKA_SENSITIVE or CKA_EXTRACTABLE); a card stores no attributes,
// so a token object accepts only its current values.
func (m *Module) SetAttributeValue(h, obj uint64, tmpl []Attr) error {
	s, err := m.sess(h)
	if err != nil {
		return err
	}
	o, co, err := m.lookup(s, obj)
	if err != nil {
		return err
	}
	t, err := templateAttrs(tmpl)
	if err != nil {
		return err
	}
	if o.owner == nil {
		if !s.rw {
			return errRV(CKR_SESSION_READ_ONLY, "read-only session")
		}
		cur := m.attrsOf(s.ts, co, attrTypes(tmpl))
		for typ, v := range t {
			if cur.sensitive[typ] {
				return errRV(CKR_ATTRIBUTE_READ_ONLY, "sensitive attribute")
			}
			old, ok := cur.v[typ]
			if !ok {
				return errRV(CKR_ATTRIBUTE_TYPE_INVALID, "no such attribute")
			}
			if !bytes.Equal(old, v) {
				return errRV(CKR_ATTRIBUTE_READ_ONLY, "the card cannot store this attribute")
			}
		}
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a := o.attrs
	if mod := a.v[CKA_MODIFIABLE]; len(mod) == 1 && mod[0] == 0 {
		return errRV(CKR_ACTION_PROHIBITED, "object not modifiable")
	}
	for typ, v := range t {
		if readOnlyAttrs[typ] {
			return errRV(CKR_ATTRIBUTE_READ_ONLY, "attribute fixed at creation")
		}
		if typ == CKA_SENSITIVE && len(v) == 1 && v[0] == 0 && a.v[CKA_SENSITIVE] != nil && a.v[CKA_SENSITIVE][0] != 0 {
			return errRV(CKR_ATTRIBUTE_READ_ONLY, "sensitive cannot be turned off")
		}
		if typ == CKA_EXTRACTABLE && len(v) == 1 && v[0] != 0 && a.v[CKA_EXTRACTABLE] != nil && a.v[CKA_EXTRACTABLE][0] == 0 {
			return errRV(CKR_ATTRIBUTE_READ_ONLY, "extractable cannot be turned on")
		}
	}
	nv := make(map[uint64][]byte, len(a.v))
	for k, v := range a.v {
		nv[k] = v
	}
	for typ, v := range t {
		nv[typ] = append([]byte{}, v...)
	}
	o.attrs = attrSet{v: nv, sensitive: a.sensitive}
	if v := nv[CKA_SENSITIVE]; len(v) == 1 && v[0] != 0 {
		o.attrs.sensitive = map[uint64]bool{CKA_VALUE: true}
	}
	return nil
}

// CopyObject copies a session object with template changes; token objects are not
// copyable.
func (m *Module) CopyObject(h, obj uint64, tmpl []Attr) (uint64, error) {
	s, err := m.sess(h)
	if err != nil {
		return 0, err
	}
	o, _, err := m.lookup(s, obj)
	if err != nil {
		return 0, err
	}
	if o.owner == nil {
		return 0, errRV(CKR_ACTION_PROHIBITED, "token objects are not copyable")
	}
	t, err := templateAttrs(tmpl)
	if err != nil {
		return 0, err
	}
	if v, ok := t[CKA_TOKEN]; ok && len(v) == 1 && v[0] != 0 {
		return 0, errRV(CKR_TEMPLATE_INCONSISTENT, "cannot copy onto the card")
	}
	m.mu.RLock()
	a := o.attrs
	m.mu.RUnlock()
	if cp := a.v[CKA_COPYABLE]; len(cp) == 1 && cp[0] == 0 {
		return 0, errRV(CKR_ACTION_PROHIBITED, "object not copyable")
	}
	nv := map[uint64][]byte{}
	for k, v := range a.v {
		nv[k] = v
	}
	ns := map[uint64]bool{}
	for k, v := range a.sensitive {
		ns[k] = v
	}
	for typ, v := range t {
		if typ == CKA_CLASS || typ == CKA_KEY_TYPE || typ == CKA_VALUE {
			return 0, errRV(CKR_ATTRIBUTE_READ_ONLY, "attribute fixed at creation")
		}
		nv[typ] = append([]byte{}, v...)
	}
	private := len(nv[CKA_PRIVATE]) == 1 && nv[CKA_PRIVATE][0] != 0
	m.mu.RLock()
	login := s.ts.login
	m.mu.RUnlock()
	if private && login != loginUser {
		return 0, errRV(CKR_USER_NOT_LOGGED_IN, "private objects need the user logged in")
	}
	return m.addSessionObject(s, attrSet{v: nv, sensitive: ns}, private)
}
