/* Links against an installed libloom and calls into it. */
#include <stdio.h>
#include <string.h>

#include <loom/loom.h>

int
main(void)
{
    loom_uuid u;
    char text[LOOM_UUID_STRLEN];

    if (loom_uuid_generate(&u) != LOOM_OK)
        return 1;
    loom_uuid_format(&u, text);
    printf("%s %s\n", loom_err_name(LOOM_ECONFLICT), text);
    return strcmp(loom_strerror(LOOM_OK), "success") != 0;
}
