/* loom_strerror() and loom_err_name(), generated from LOOM_ERR_MAP. */
#include "loom/error.h"

const char *
loom_strerror(loom_err err)
{
    switch (err) {
#define LOOM__ERR_STR(name, value, msg)                                        \
    case name:                                                                 \
        return msg;
        LOOM_ERR_MAP(LOOM__ERR_STR)
#undef LOOM__ERR_STR
    }
    return "unknown error";
}

const char *
loom_err_name(loom_err err)
{
    switch (err) {
#define LOOM__ERR_NAME(name, value, msg)                                       \
    case name:                                                                 \
        return #name;
        LOOM_ERR_MAP(LOOM__ERR_NAME)
#undef LOOM__ERR_NAME
    }
    return "LOOM_UNKNOWN";
}
