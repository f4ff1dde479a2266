/*
 * Saga instances as the orchestrator's loads and claims return them (in
 * binary format): the columns every decision needs, in one order, so a
 * loaded row and a claimed row read alike.
 */
#include <string.h>

#include "orch_int.h"
#include "pgwire.h"

int
loom__orch_row(const loom_orchestrator *o, const PGresult *r, int row, int col,
               loom__saga_inst *out)
{
    int32_t v32 = 0, step = 0, attempt = 0;

    memset(out, 0, sizeof *out);
    if (PQnfields(r) < col + 11 || PQgetisnull(r, row, col) ||
        PQgetisnull(r, row, col + 1) ||
        !loom__pg_get_i32(r, row, col + 2, &v32) ||
        !loom__pg_get_i32(r, row, col + 4, &step) ||
        !loom__pg_get_i32(r, row, col + 5, &attempt) ||
        !loom__pg_get_i64(r, row, col + 10, &out->version) ||
        PQgetisnull(r, row, col + 8) || PQgetisnull(r, row, col + 9)) {
        return -1;
    }
    out->id = PQgetvalue(r, row, col);
    out->state = loom_saga_state_parse(PQgetvalue(r, row, col + 3));
    if (out->state == 0 || step < 0 || attempt < 0) {
        return -1;
    }
    out->step = step;
    out->attempt = (uint32_t) attempt;
    out->waiting = PQgetisnull(r, row, col + 6)
                       ? LOOM__WAIT_NONE
                       : loom__saga_wait_parse(PQgetvalue(r, row, col + 6));
    if (!PQgetisnull(r, row, col + 7) && PQgetlength(r, row, col + 7) == 16) {
        memcpy(out->command_id.bytes, PQgetvalue(r, row, col + 7), 16);
    }
    out->outbox = PQgetvalue(r, row, col + 8);
    out->data = (unsigned char *) PQgetvalue(r, row, col + 9);
    out->data_len = (size_t) PQgetlength(r, row, col + 9);
    out->def = loom__orch_def(o, PQgetvalue(r, row, col + 1), (uint32_t) v32);
    /* A step past the def's would index out of its tables. */
    if (out->def != NULL && (size_t) step >= out->def->n_steps) {
        return -1;
    }
    return 0;
}
