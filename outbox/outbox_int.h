/*
 * Private to outbox/: what the outbox writer (outbox.c) and the relay
 * (relay.c) share.
 */
#ifndef LOOM_OUTBOX_INT_H
#define LOOM_OUTBOX_INT_H

/* 1 when `name` is a valid outbox name (loom/outbox.h), else 0. */
int loom__outbox_name_ok(const char *name);

#endif /* LOOM_OUTBOX_INT_H */
