/*
 * The handlers of shop/order_saga.proto, written by hand as a user would
 * from the generated prototypes (handlers.c): each records that it ran
 * and with which arguments, so tables_test can prove that a table entry
 * reaches the right function with its arguments in the right places.
 */
#ifndef CODEGEN_HANDLERS_H
#define CODEGEN_HANDLERS_H

typedef struct handler_call {
    const char *fn;     /* the handler that ran (__func__) */
    const void *ctx;    /* its context */
    const void *arg[3]; /* its other arguments, in order (NULL: none) */
    int calls;          /* handlers run so far */
} handler_call;

extern handler_call codegen_last_call;

#endif
