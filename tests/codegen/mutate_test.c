/*
 * Whole CodeGeneratorRequests through gen_process(), the plugin minus its
 * stdin and stdout: the golden sample's request gives its files, and
 * thousands of mutated copies of it give a clean outcome each (a
 * response, with or without an error, or a refusal of the input), never
 * a crash, a leak or a read out of bounds (the sanitizer build checks).
 * A first taste of the fuzzing the plugin will get. Also: reading the
 * request stops past its size limit.
 *
 * LOOM_TEST_SEED=<n> replays a run; the seed is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "google/protobuf/compiler/plugin.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "run.h"

typedef Google__Protobuf__Compiler__CodeGeneratorResponse response;

struct fx {
    uint8_t *req; /* the packed request */
    size_t n;
};

static uint64_t rng;

static uint64_t
next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The request protoc would send for shop/order_saga.proto, built from its
 * descriptor set (the same files, in the same order). */
static int
setup(void **state)
{
    FILE *f = fopen(CODEGEN_DESC, "rb");
    assert_non_null(f);
    uint8_t *set_bytes;
    size_t set_len;
    char err[256];
    assert_int_equal(
        gen_read_all(f, 1 << 24, &set_bytes, &set_len, err, sizeof err), 0);
    fclose(f);
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, set_len, set_bytes);
    assert_non_null(set);
    free(set_bytes);

    Google__Protobuf__Compiler__CodeGeneratorRequest req =
        GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_REQUEST__INIT;
    char *to_generate[] = {"shop/order_saga.proto"};
    req.n_file_to_generate = 1;
    req.file_to_generate = to_generate;
    req.n_proto_file = set->n_file;
    req.proto_file = set->file;
    struct fx *fx = malloc(sizeof(*fx));
    fx->n = google__protobuf__compiler__code_generator_request__get_packed_size(
        &req);
    fx->req = malloc(fx->n);
    google__protobuf__compiler__code_generator_request__pack(&req, fx->req);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;
    free(fx->req);
    free(fx);
    return 0;
}

/* Runs gen_process() on `in`; NULL when it refused the input. */
static response *
process(const uint8_t *in, size_t n)
{
    uint8_t *out;
    size_t out_len;
    char err[256];
    if (gen_process(in, n, &out, &out_len, err, sizeof err) != 0) {
        assert_null(out);
        assert_true(strlen(err) > 0);
        return NULL;
    }
    response *r = google__protobuf__compiler__code_generator_response__unpack(
        NULL, out_len, out);
    free(out);
    assert_non_null(r); /* whatever the input, the output is a response */
    return r;
}

static void
test_mutate_sample_request_gives_its_files(void **state)
{
    struct fx *fx = *state;
    response *r = process(fx->req, fx->n);
    assert_non_null(r);
    assert_null(r->error);
    const char *want[] = {"shop/order_saga.loom.h", "shop/order_saga.loom.c",
                          "shop/order_saga.CreateOrder.mmd",
                          "shop/order_saga.CancelOrder.mmd"};
    assert_int_equal(r->n_file, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(r->file[i]->name, want[i]);
        assert_true(strlen(r->file[i]->content) > 100);
    }
    assert_true(r->has_supported_features);
    google__protobuf__compiler__code_generator_response__free_unpacked(r, NULL);
}

static void
test_mutate_garbage_is_refused(void **state)
{
    (void) state;
    assert_null(process((const uint8_t *) "\xff\xff\xff", 3));
    /* The empty request is a valid one: nothing to generate. */
    response *r = process(NULL, 0);
    assert_non_null(r);
    assert_null(r->error);
    assert_int_equal(r->n_file, 0);
    google__protobuf__compiler__code_generator_response__free_unpacked(r, NULL);
}

static void
test_mutate_mutated_requests_never_crash(void **state)
{
    struct fx *fx = *state;
    const char *seed_env = getenv("LOOM_TEST_SEED");
    uint64_t seed =
        seed_env != NULL ? strtoull(seed_env, NULL, 10) : (uint64_t) time(NULL);
    printf("mutate_test: LOOM_TEST_SEED=%llu\n", (unsigned long long) seed);
    rng = seed * 2654435761u + 1;
    uint8_t *buf = malloc(fx->n + 16);
    size_t refused = 0, errors = 0, generated = 0;
    for (int i = 0; i < 3000; i++) {
        memcpy(buf, fx->req, fx->n);
        size_t n = fx->n;
        int edits = 1 + (int) (next() % 4);
        for (int k = 0; k < edits; k++) {
            size_t at = (size_t) (next() % n);
            switch (next() % 4) {
            case 0: /* flip a bit */
                buf[at] ^= (uint8_t) (1u << (next() % 8));
                break;
            case 1: /* a random byte */
                buf[at] = (uint8_t) next();
                break;
            case 2: /* truncate */
                n = at + 1;
                break;
            default: /* a small varint-ish value (lengths, tags) */
                buf[at] = (uint8_t) (next() % 3 == 0 ? 0x80 : next() % 16);
            }
        }
        response *r = process(buf, n);
        if (r == NULL) {
            refused++;
            continue;
        }
        if (r->error != NULL) {
            errors++;
        } else {
            generated++;
        }
        google__protobuf__compiler__code_generator_response__free_unpacked(
            r, NULL);
    }
    free(buf);
    printf("mutate_test: %zu refused, %zu definition errors, %zu generated\n",
           refused, errors, generated);
    assert_true(refused > 0);
    assert_true(errors + generated > 0);
}

static void
test_mutate_read_all_stops_past_its_limit(void **state)
{
    (void) state;
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fwrite("0123456789", 1, 10, f), 10);
    uint8_t *buf;
    size_t n;
    char err[128];
    rewind(f);
    assert_int_equal(gen_read_all(f, 10, &buf, &n, err, sizeof err), 0);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "0123456789", 10);
    free(buf);
    rewind(f);
    assert_int_equal(gen_read_all(f, 9, &buf, &n, err, sizeof err), -1);
    assert_string_equal(err, "the request is larger than 9 bytes");
    fclose(f);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_mutate_sample_request_gives_its_files),
        T(test_mutate_garbage_is_refused),
        T(test_mutate_mutated_requests_never_crash),
        cmocka_unit_test(test_mutate_read_all_stops_past_its_limit),
    };
    return cmocka_run_group_tests_name("codegen.mutate", tests, NULL, NULL);
}
