/*
 * tests/fuzz/fuzz_proto.c - fuzz target for the strict msgpack decoders
 * (proto/proto.h): vkvp_decode_request, and vkvp_decode_reply for every op.
 *
 * Properties checked on every input:
 *  - the decoders never crash, leak or read outside the frame (sanitizers);
 *  - a failure is VKV_EPROTO / VKV_ETOOBIG (VKV_ENOMEM tolerated) with
 *    *out == NULL and a NUL-terminated reason;
 *  - an accepted message re-encodes (the encoders accept whatever the
 *    decoder accepted), the re-encoded frame decodes again, and both decoded
 *    messages render to the same JSON (decode . encode is the identity);
 *  - vkvp_peek_req_id agrees with a successful decode or says 0 ("cannot
 *    tell", its documented best effort; it ignores signed-int encodings).
 * All memory is local to one call.
 */
#include <string.h>

#include "fuzz.h"
#include "proto/proto.h"

/* Checks the error contract of a failed decode. */
static void check_failure(int rc, const void *out, const char *why)
{
    VKVF_CHECK(rc == VKV_EPROTO || rc == VKV_ETOOBIG || rc == VKV_ENOMEM, "rc %d", rc);
    VKVF_CHECK(out == NULL, "out set on error %d", rc);
    VKVF_CHECK(memchr(why, 0, VKVP_WHY_LEN) != NULL, "why not terminated");
}

/* Request path: decode, render, re-encode, re-decode, compare renderings. */
static void fuzz_request(const uint8_t *data, size_t size)
{
    vkvp_request *req = NULL;
    char why[VKVP_WHY_LEN];
    why[0] = 0;
    int rc = vkvp_decode_request(data, size, &req, why, sizeof why);
    if (rc != 0) {
        check_failure(rc, req, why);
        return;
    }
    uint64_t peek = vkvp_peek_req_id(data, size); /* best effort: 0 = cannot tell */
    VKVF_CHECK(peek == req->req_id, "peek disagrees");
    char *j1 = NULL, *j2 = NULL;
    void *frame = NULL;
    size_t flen = 0;
    vkvp_request *again = NULL;
    VKVF_CHECK(vkvp_request_to_json(req, &j1) == 0, "to_json of a decoded request");
    rc = vkvp_encode_request(req, &frame, &flen);
    VKVF_CHECK(rc == 0, "re-encode of a decoded %s request failed: %d (%s)",
               vkvp_op_name((int)req->op), rc, j1);
    rc = vkvp_decode_request(frame, flen, &again, why, sizeof why);
    VKVF_CHECK(rc == 0, "re-decode failed: %d %s (%s)", rc, why, j1);
    VKVF_CHECK(vkvp_request_to_json(again, &j2) == 0, "to_json of the re-decoded request");
    VKVF_CHECK(strcmp(j1, j2) == 0, "round trip changed the request:\n %s\n %s", j1, j2);
    free(j1);
    free(j2);
    free(frame);
    vkvp_request_free(again);
    vkvp_request_free(req);
}

/* Reply path for one op, same round trip. */
static void fuzz_reply(const uint8_t *data, size_t size, vkvp_op op)
{
    vkvp_reply *rep = NULL;
    char why[VKVP_WHY_LEN];
    why[0] = 0;
    int rc = vkvp_decode_reply(data, size, op, &rep, why, sizeof why);
    if (rc != 0) {
        check_failure(rc, rep, why);
        return;
    }
    VKVF_CHECK(rep->op == op, "op not set");
    uint64_t peek = vkvp_peek_req_id(data, size); /* best effort: 0 = cannot tell */
    VKVF_CHECK(peek == rep->req_id, "peek disagrees");
    char *j1 = NULL, *j2 = NULL;
    void *frame = NULL;
    size_t flen = 0;
    vkvp_reply *again = NULL;
    VKVF_CHECK(vkvp_reply_to_json(rep, &j1) == 0, "to_json of a decoded reply");
    rc = vkvp_encode_reply(rep, &frame, &flen);
    VKVF_CHECK(rc == 0, "re-encode of a decoded %s reply failed: %d (%s)", vkvp_op_name((int)op),
               rc, j1);
    rc = vkvp_decode_reply(frame, flen, op, &again, why, sizeof why);
    VKVF_CHECK(rc == 0, "re-decode failed: %d %s (%s)", rc, why, j1);
    VKVF_CHECK(vkvp_reply_to_json(again, &j2) == 0, "to_json of the re-decoded reply");
    VKVF_CHECK(strcmp(j1, j2) == 0, "round trip changed the reply:\n %s\n %s", j1, j2);
    free(j1);
    free(j2);
    free(frame);
    vkvp_reply_free(again);
    vkvp_reply_free(rep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)vkvp_peek_req_id(data, size);
    fuzz_request(data, size);
    for (int op = VKVP_HELLO; op <= VKVP_OP_MAX_; op++)
        fuzz_reply(data, size, (vkvp_op)op);
    return 0;
}
