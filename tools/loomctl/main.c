/*
 * loomctl: the Eventloom operator CLI. This file finds the command,
 * handles -h/--help, prints usage and errors, and maps the outcome to the
 * exit status (0 ok, 1 runtime error, 2 usage error).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loomctl.h"

typedef struct main_cmd {
    const char *name;
    const char *synopsis; /* after "loomctl NAME "; a line per subcommand */
    const char *summary;  /* one line for the command list */
    const char *help;     /* what it does and its options */
    int (*run)(ctl *c, int argc, char **argv);
} main_cmd;

static int main_help(ctl *c, int argc, char **argv);

static const main_cmd main_cmds[] = {
    {"migrate", "[--status]", "apply schema migrations, or show the version",
     "Applies the schema migrations the database lacks, each in its own\n"
     "transaction (concurrent runs wait for each other), and prints the\n"
     "schema version. --json prints {\"applied\":n,\"version\":N}.\n"
     "  --status   only show the applied and the latest version\n",
     ctl_cmd_migrate},
    {"streams", "[--category C] [--limit N] [--after NAME]",
     "list streams by name",
     "Lists streams ordered by name: name, category, version, number of\n"
     "events, creation time.\n"
     "  --category C   only streams of category C (\"order\" for order-42)\n"
     "  --limit N      at most N streams (default 50, at most 100000)\n"
     "  --after NAME   start after stream NAME (page with the last name)\n",
     ctl_cmd_streams},
    {"read", "STREAM [--from V] [--backward] [--limit N]",
     "print one stream's events",
     "Prints the events of one stream by version, payloads decoded to\n"
     "JSON (with --types, by name; else by field number).\n"
     "  --from V     first version to print (default 0, or the newest\n"
     "               with --backward)\n"
     "  --backward   newest first\n"
     "  --limit N    at most N events (default 100); when more follow,\n"
     "               the version to continue from is printed as \"next: V\"\n"
     "Finding no events, it says whether the stream does not exist or\n"
     "ends before V (on stderr with --json). A stream name that starts\n"
     "with '-' goes after \"--\".\n",
     ctl_cmd_read},
    {"tail",
     "[--from CURSOR] [--category C] [--group M/N] [--limit N] [--follow] "
     "[--poll-ms MS]",
     "print events in commit order, or follow them",
     "Prints events of all streams (or of one category) in commit order.\n"
     "Without --from, starts with the newest N events.\n"
     "  --from CURSOR  start after TX:POS (a cursor, as printed by "
     "\"next:\"),\n"
     "                 at POS (an event's position; finding its transaction\n"
     "                 scans loom.events), or at \"start\"\n"
     "  --category C   only streams of category C\n"
     "  --group M/N    with --category: member M (0-based) of N readers\n"
     "  --limit N      at most N events (default 20); with --follow, only\n"
     "                 the number of newest events shown first\n"
     "  --follow       keep printing new events until interrupted\n"
     "  --poll-ms MS   how often --follow looks (default 200)\n"
     "Ends with \"next: TX:POS\", the cursor to continue from (on stderr with\n"
     "--json or --follow).\n",
     ctl_cmd_tail},
    {"stats", "", "counts, sizes, event rate, what holds readers back",
     "Shows event, stream and category counts, the size of the loom\n"
     "tables, events per second over the last minute, and the oldest\n"
     "open transaction, which holds readers in commit order back.\n",
     ctl_cmd_stats},
    {"parked",
     "list [SUBSCRIPTION] [--limit N]\n"
     "replay SUBSCRIPTION (EVENT_ID | --all)\n"
     "drop SUBSCRIPTION (EVENT_ID | --all)",
     "list, retry or forget events subscriptions gave up on",
     "A subscription whose handler fails on an event max_attempts times\n"
     "parks it (table loom.parked) and goes on past it.\n"
     "  list      parked events by subscription and position: event id,\n"
     "            stream@version, type, attempts, age, whether a replay is\n"
     "            requested, the error (cut to one line; --json has it all)\n"
     "    --limit N   at most N events (default 100, at most 100000)\n"
     "  replay    asks the running subscription to deliver the event (or\n"
     "            --all of its parked events) once more; it removes each\n"
     "            one its handler accepts. Exit 1 when nothing matched.\n"
     "  drop      deletes the event's (or --all) parked rows for good\n",
     ctl_cmd_parked},
    {"projection",
     "list\n"
     "status NAME\n"
     "rebuild NAME --plugin LIB.so [--restart] [--batch N]",
     "projections: lag, state, parked events; rebuild one",
     "Projections are read models fed by events (loom/projection.h).\n"
     "  list      one row per registered projection: its model (schema or\n"
     "            memory), generation, checkpoint position, lag in events\n"
     "            (counted up to 1,000,000) and seconds, parked events, and\n"
     "            whether its runner or a rebuild is connected\n"
     "  status    the same for one projection, with the rebuild's progress,\n"
     "            what holds readers back, and its newest parked events\n"
     "  rebuild   replays every event into a fresh copy of the read model\n"
     "            (schema <schema>__rebuild) with the handlers of LIB.so, a\n"
     "            shared object exporting loom_projections(), then swaps it\n"
     "            in; the live runner keeps serving meanwhile. Ctrl-C stops\n"
     "            between batches (exit 130); running it again resumes.\n"
     "    --plugin LIB.so   the projection's code (required)\n"
     "    --restart         drop a stopped rebuild's work, start over\n"
     "    --batch N         events per batch (default 5000, at most 1000000)\n",
     ctl_cmd_projection},
    {"topics",
     "create NAME --partitions N [SETTINGS]\n"
     "alter NAME SETTINGS\n"
     "list\n"
     "describe NAME\n"
     "lag [GROUP]\n"
     "reset GROUP TOPIC --to earliest|latest|offset:N|time:T "
     "[--partition P]\n"
     "dlq TOPIC [list] [--group G] [--limit N]\n"
     "dlq TOPIC redrive [--group G] [--partition P --offset O]\n"
     "retention",
     "topic streams: settings, sizes, group lag, dead letters, retention",
     "Topics are partitioned logs stored in PostgreSQL (loom/topics.h),\n"
     "read by consumer groups. Names are words of letters, digits, '_' and\n"
     "'-' separated by dots; \"<topic>.dlq\" holds a topic's dead letters.\n"
     "  create     a topic with N partitions (1 to 4096). SETTINGS:\n"
     "    --retention-ms N      drop messages older than N ms (0: never)\n"
     "    --retention-bytes N   keep about N bytes per partition (0: no\n"
     "                          limit)\n"
     "    --dedup-window-ms N   drop a message whose id was published in\n"
     "                          the last N ms (0: off; default 300000)\n"
     "    --max-deliveries N    deliveries before a message is\n"
     "                          dead-lettered (1 to 1000; default 5)\n"
     "  alter      changes the SETTINGS given, and --partitions N (which\n"
     "             can only grow); a retention of 0 removes the limit\n"
     "  list       every topic: partitions, stored messages and bytes,\n"
     "             retention, dedup window, max deliveries\n"
     "  describe   one topic's settings, its partitions' offsets, and the\n"
     "             consumer groups reading it with their lag\n"
     "  lag        per group, topic and partition: end offset, committed\n"
     "             offset, lag, member, messages waiting for redelivery\n"
     "  reset      moves a group's committed offsets (all partitions, or\n"
     "             --partition P); its running members go on from there.\n"
     "             T is ISO 8601 (UTC without a zone) or ms since 1970\n"
     "  dlq        the dead letters of TOPIC (the source topic), or\n"
     "             redrive them: back to their group as redeliveries due\n"
     "             now (all, one --group, or the one at --partition and\n"
     "             --offset of TOPIC.dlq). Those whose original retention\n"
     "             removed cannot be re-driven and are counted apart.\n"
     "    --limit N   list at most N (default 100, at most 100000)\n"
     "  retention  applies every topic's retention now (running transports\n"
     "             do it on their own) and prints the rows removed\n",
     ctl_cmd_topics},
    {"outbox",
     "status [OUTBOX]\n"
     "dlq [OUTBOX] [--limit N]\n"
     "redrive [OUTBOX] [--id UUID ...]",
     "outboxes: messages waiting, the active relay, dead letters",
     "The outbox (loom/outbox.h) holds the messages services wrote in their\n"
     "transactions until a relay (`loomctl relay`) publishes them. Without\n"
     "OUTBOX, every outbox.\n"
     "  status    one row per outbox: messages waiting (PENDING) and the\n"
     "            oldest one's age, messages published in all, the publish\n"
     "            rate, dead letters, and the active relay: its name, its\n"
     "            PostgreSQL backend pid, since when it leads, its\n"
     "            transport and heartbeat (\"none\" without one; \"none\n"
     "            (last: NAME, gone)\" when it died without stepping down),\n"
     "            and since when publishing fails, with the last error\n"
     "  dlq       the messages a relay could never publish (the transport\n"
     "            refused them for good): position, message id, topic,\n"
     "            key (text, or hex), type, payload size, when, the error\n"
     "    --limit N   at most N (default 100, at most 100000)\n"
     "  redrive   puts dead letters back into the outbox as new messages\n"
     "            with their ids (all, or those of each --id), for the relay\n"
     "            to publish again; an --id that is no dead letter exits 1\n"
     "            and re-drives nothing\n",
     ctl_cmd_outbox},
    {"relay",
     "[--outbox NAME] [--transport URL] [--batch N] [--name NAME] "
     "[--report-ms N]",
     "publish an outbox's messages until stopped",
     "Runs a relay for one outbox in the foreground: while it is the\n"
     "active relay it publishes the outbox's messages in commit order and\n"
     "records its progress; others started for the same outbox stand by\n"
     "and one takes over within about a second when it stops or dies.\n"
     "Prints a line when it becomes active or stands by, and a status\n"
     "line (published, rate, failed publishes, dead letters) now and\n"
     "then. SIGINT or SIGTERM stops it cleanly (the batch in hand is\n"
     "published and recorded, then it steps down; exit 0); a second\n"
     "signal ends it at once. --json prints one object per event\n"
     "(started, active, standby, report, stopping, stopped).\n"
     "  --outbox NAME     the outbox (default \"default\")\n"
     "  --transport URL   where messages go (default topics:// on the\n"
     "                    --db database: the built-in topics)\n"
     "  --batch N         most messages per publish (default 500, at\n"
     "                    most 10000)\n"
     "  --name NAME       shown as the active relay by `outbox status`\n"
     "                    (default \"<host> pid <pid>\")\n"
     "  --report-ms N     a status line every N ms (default 10000; 0:\n"
     "                    never)\n",
     ctl_cmd_relay},
    {"saga",
     "list [--state S] [--type T] [--limit N]\n"
     "show ID\n"
     "retry|skip|abort ID [--by NAME] [--wait SECONDS]\n"
     "diagram TYPE [--version V]",
     "sagas: what they do, their history, operators' requests",
     "Sagas (loom/saga.h) are run by orchestrators; loomctl reads what they\n"
     "recorded and passes operators' requests to them.\n"
     "  list      the newest sagas first: id, type@version, state, step\n"
     "            (its name when the definition is registered), attempt,\n"
     "            start, how long it took (or has run so far), a pending\n"
     "            request and the last error; then the count per state\n"
     "    --state S   only sagas in state S (RUNNING, COMPENSATING,\n"
     "                COMPLETED, COMPENSATED, COMPENSATION_FAILED, ABORTED)\n"
     "    --type T    only sagas of type T (\"shop.CreateOrder\")\n"
     "    --limit N   at most N (default 100, at most 100000)\n"
     "  show      one saga: its state, step, what it waits for, a pending\n"
     "            request, its data (decoded with --types, else its size),\n"
     "            then its log: time since the start, step, attempt, kind,\n"
     "            how long the command took to be answered, message id,\n"
     "            detail (failure code and message, operator)\n"
     "  retry     COMPENSATION_FAILED: run the failed compensation again,\n"
     "            with fresh attempts\n"
     "  skip      COMPENSATION_FAILED: count the failed compensation as\n"
     "            done (undo its step by hand) and go on with the ones\n"
     "            before it\n"
     "  abort     any saga not yet final: stop it for good (ABORTED);\n"
     "            nothing more is sent or compensated\n"
     "            retry, skip and abort are requests: a running\n"
     "            orchestrator applies them, and logs who asked\n"
     "    --by NAME       who asks (default $USER@host)\n"
     "    --wait SECONDS  wait until an orchestrator applied it and print\n"
     "                    the new state; exit 1 if none did in time\n"
     "  diagram   the Mermaid diagram of a saga type, as its orchestrator\n"
     "            registered it\n"
     "    --version V   that version (default: the latest)\n",
     ctl_cmd_saga},
    /* A command like the others, so that `help help` and `help -h` work. */
    {"help", "[COMMAND]", "help on a command (or -h after it)",
     "Prints the list of commands, or the help of COMMAND: the same as\n"
     "`loomctl COMMAND --help`.\n",
     main_help},
};

#define MAIN_NCMDS (sizeof main_cmds / sizeof main_cmds[0])

static const char main_globals[] =
    "Global options (before or after the command):\n"
    "  --db URL          PostgreSQL connection string (default:\n"
    "                    $LOOM_DATABASE_URL, else libpq's PG* variables)\n"
    "  --role ROLE       work as this PostgreSQL role, of which the login\n"
    "                    is a member: loom_reader to look, loom_writer\n"
    "                    to relay, rebuild or repair, loom_admin to\n"
    "                    migrate (docs/operating.md, \"Roles and TLS\")\n"
    "  --json            one JSON object per line, for scripts\n"
    "  --types PATH.so   a shared object exporting loom_register_types(),\n"
    "                    to decode payloads by type name (repeatable)\n"
    "  -h, --help        show help\n"
    "Exit status: 0 ok, 1 runtime error, 2 usage error.\n";

static const main_cmd *
main_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < MAIN_NCMDS; i++) {
        if (strcmp(main_cmds[i].name, name) == 0)
            return &main_cmds[i];
    }
    return NULL;
}

/* "usage: loomctl NAME SYNOPSIS", a line for each line of the synopsis. */
static void
main_synopsis(FILE *f, const main_cmd *cmd)
{
    const char *p = cmd->synopsis, *nl;
    int first = 1;

    do {
        nl = strchr(p, '\n');
        fprintf(f, "%s loomctl %s%s%.*s\n", first ? "usage:" : "      ",
                cmd->name, p[0] ? " " : "",
                (int) (nl != NULL ? (size_t) (nl - p) : strlen(p)), p);
        first = 0;
        if (nl != NULL)
            p = nl + 1;
    } while (nl != NULL);
}

static void
main_usage(FILE *f, const main_cmd *cmd, int full)
{
    if (cmd != NULL) {
        main_synopsis(f, cmd);
        if (full)
            fprintf(f, "\n%s\n%s", cmd->help, main_globals);
        return;
    }
    fprintf(f, "usage: loomctl [--db URL] [--role ROLE] [--json] "
               "[--types PATH.so] COMMAND [ARGS]\n");
    if (!full) {
        fprintf(f, "Try 'loomctl --help'.\n");
        return;
    }
    fprintf(f, "\nCommands:\n");
    for (size_t i = 0; i < MAIN_NCMDS; i++)
        fprintf(f, "  %-10s %s\n", main_cmds[i].name, main_cmds[i].summary);
    fprintf(f, "\n%s", main_globals);
}

/* Prints the message with control characters (libpq's line breaks, or
 * an escape sequence in a stream name) turned into spaces. */
static void
main_vprint(const char *prefix, const char *fmt, va_list ap)
{
    char msg[2048];
    size_t n, j = 0;

    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) msg[i];
        int space = ch < 0x20 || ch == 0x7f || ch == ' ';
        if (space && (j == 0 || msg[j - 1] == ' '))
            continue; /* one space for a run such as "\n\t" */
        msg[j++] = space ? ' ' : msg[i];
    }
    while (j > 0 && msg[j - 1] == ' ')
        j--;
    msg[j] = '\0';
    fprintf(stderr, "loomctl: %s%s\n", prefix, msg);
}

void
ctl_fail(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout); /* keep stdout and stderr in order on a terminal */
    va_start(ap, fmt);
    main_vprint("", fmt, ap);
    va_end(ap);
}

/* What each role may do (framework/migrations/0010_roles.sql), for a
 * refusal that names only the table or function refused. */
#define MAIN_ROLES_HINT                                                        \
    "(the role in use lacks that right: loom_reader may only read; "           \
    "writes (topics, outbox, sagas, parked events, projections) need "         \
    "loom_writer, migrations loom_admin, and a projection rebuild also "       \
    "CREATE on the database; --role picks the role, see docs/operating.md, "   \
    "\"Roles and TLS\")"

void
ctl_fail_sql(const char *sqlstate, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* 42501, insufficient_privilege: "permission denied for table x". */
    if (sqlstate != NULL && strcmp(sqlstate, "42501") == 0)
        ctl_fail("%s %s", msg, MAIN_ROLES_HINT);
    else
        ctl_fail("%s", msg);
}

int
ctl_usage_error(const ctl *c, const char *fmt, ...)
{
    char prefix[64];
    va_list ap;

    snprintf(prefix, sizeof prefix, "%s%s%s%s", c->cmd ? c->cmd : "",
             c->sub ? " " : "", c->sub ? c->sub : "", c->cmd ? ": " : "");
    va_start(ap, fmt);
    main_vprint(prefix, fmt, ap);
    va_end(ap);
    main_usage(stderr, main_find(c->cmd), 0);
    return CTL_USAGE;
}

/* -h or --help anywhere before "--". */
static int
main_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    }
    return 0;
}

/* Finds the command: the first argument that is not a global option. */
static int
main_find_cmd(ctl *c, int argc, char **argv)
{
    ctl scratch = *c; /* globals are applied for real by the command */
    ctl_args a;
    const char *val;
    int r;

    ctl_args_init(&a, argc, argv);
    r = ctl_args_next(&scratch, &a, NULL, &val);
    if (r == CTL_ARG_BAD)
        return CTL_USAGE;
    if (r == CTL_ARG_POS) {
        c->cmd = val;
        c->cmd_index = a.i - 1;
    }
    return CTL_OK;
}

static int
main_help(ctl *c, int argc, char **argv)
{
    const char *topic = NULL;
    ctl_args a;
    const char *val;
    int r;

    ctl_args_init(&a, argc, argv);
    while ((r = ctl_args_next(c, &a, NULL, &val)) == CTL_ARG_POS) {
        if (topic != NULL)
            return ctl_usage_error(c, "give at most one command");
        topic = val;
    }
    if (r == CTL_ARG_BAD)
        return CTL_USAGE;
    if (topic != NULL && main_find(topic) == NULL)
        return ctl_usage_error(c, "no command \"%s\"", topic);
    main_usage(stdout, main_find(topic), 1);
    return CTL_OK;
}

int
main(int argc, char **argv)
{
    ctl c;
    const main_cmd *cmd;
    int rc;

    memset(&c, 0, sizeof c);
    c.cmd_index = -1;
    c.sub_index = -1;
    if (main_find_cmd(&c, argc, argv) != CTL_OK)
        return CTL_USAGE;
    cmd = main_find(c.cmd);
    if (main_wants_help(argc, argv) && (cmd != NULL || c.cmd == NULL)) {
        main_usage(stdout, cmd, 1);
        return CTL_OK;
    }
    if (c.cmd == NULL) {
        main_usage(stderr, NULL, 0);
        return CTL_USAGE;
    }
    if (cmd == NULL) {
        const char *name = c.cmd;
        c.cmd = NULL;
        return ctl_usage_error(&c, "unknown command \"%s\"", name);
    }
    rc = cmd->run(&c, argc, argv);
    loom_registry_free(c.reg);
    /* Output that could not be written (a full disk) is a failure. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_fail("writing the output failed");
        if (rc == CTL_OK)
            rc = CTL_ERR;
    }
    return rc;
}
