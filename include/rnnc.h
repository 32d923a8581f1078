/* rnnc.h — the public C API of rnnc.
 *
 * Conventions (as SQLite and Lua): handles are opaque; every function that can
 * fail returns an int status, RNNC_OK (0) on success; the message of the last
 * failure is kept on the context (rnnc_errmsg). Results come back through
 * parameters marked OUT. The library never prints and never exits.
 */
#ifndef RNNC_H
#define RNNC_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
  RNNC_OK = 0,
  RNNC_ENOMEM,   /* out of memory */
  RNNC_EIO,      /* a file could not be read or written */
  RNNC_ESYNTAX,  /* the model text does not parse */
  RNNC_EVERIFY,  /* the model parses but is not well formed */
  RNNC_EFORMAT,  /* a malformed tensor file */
  RNNC_ESHAPE,   /* a tensor has the wrong shape or type for the model */
  RNNC_EINPUT,   /* a missing tensor or a bad value (a token id out of range) */
  RNNC_EMISUSE,  /* the API was called wrongly */
};

/* The builder API and the rest of the public interface are declared in
 * rnnc_api.h-style sections below as they land. */

#ifdef __cplusplus
}
#endif
#endif
