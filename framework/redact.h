/*
 * Keeping passwords out of logs, errors and tool output. A connection
 * string (libpq key=value settings or a URI) may carry a password; so
 * may a message libpq wrote about one (its parse errors quote the pieces
 * they stumbled on). Everything Eventloom shows about a connection goes
 * through these first.
 */
#ifndef LOOM_REDACT_H
#define LOOM_REDACT_H

#include "buf.h"

/* What a hidden secret reads as. */
#define LOOM__REDACTED "***"

/*
 * Appends `conninfo` to `out` with each secret replaced by "***": the
 * value of a `password` or `sslpassword` setting (key=value form, quoted
 * or not, spaces around '=' allowed), the password of a URI's user part
 * (`scheme://user:secret@host`, any scheme) and a `password` or
 * `sslpassword` URI parameter (its name percent-decoded, as libpq does).
 * Purely lexical, so it also hides what libpq would reject: from the
 * first thing that is not a setting on, key=value text is shown as "***".
 * NULL appends nothing.
 */
void loom__conninfo_redact(const char *conninfo, loom__buf *out);

/*
 * Appends `msg` (a message from libpq or the server about a connection
 * made with `conninfo`, which may be NULL) to `out` with every secret of
 * `conninfo` (as written, and unquoted or percent-decoded) replaced by
 * "***", and, when `conninfo` is not a valid connection string (libpq's
 * parse error then quotes pieces of it), every double-quoted token too.
 */
void loom__redact_message(const char *msg, const char *conninfo,
                          loom__buf *out);

#endif /* LOOM_REDACT_H */
