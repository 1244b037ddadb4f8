/* ops.h: operation selectors the shims pass to the shared Go exports. */
#ifndef P11CARD_OPS_H
#define P11CARD_OPS_H
enum {
	OP_SIGN = 1,
	OP_VERIFY,
	OP_ENCRYPT,
	OP_DECRYPT,
	OP_DIGEST,
	OP_SIGN_RECOVER,
	OP_VERIFY_RECOVER
};
#endif
