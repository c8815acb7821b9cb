/*
 * tests/proto/vkvp_dump.c - decode one frame from stdin and print it as JSON.
 *
 *   vkvp_dump                 decode stdin as a request
 *   vkvp_dump --reply OP      decode stdin as the reply to op number OP
 *   vkvp_dump --ops           print the op table (VKVP_OPS) as {"NAME":n,...}
 *
 * Prints one JSON line (vkvp_request_to_json / vkvp_reply_to_json) and exits
 * 0, or prints {"error":"VKV_E...","why":"..."} and exits 1. Exit 2 on usage
 * or I/O errors. Used by proto_python_test.py to check docs/PROTOCOL.md
 * against frames built by another msgpack implementation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

/* Reads all of stdin (at most VKVP_MAX_FRAME + 16 bytes, so that oversized
 * frames still reach the decoder); returns a malloc'ed buffer or NULL. */
static unsigned char *read_stdin(size_t *len)
{
    size_t cap = VKVP_MAX_FRAME + 16, n = 0, got;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return NULL;
    while (n < cap && (got = fread(buf + n, 1, cap - n, stdin)) > 0)
        n += got;
    if (ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Prints the error object for rc and why (why escaped as a JSON string). */
static void print_error(int rc, const char *why)
{
    printf("{\"error\":\"%s\",\"why\":\"", vkv_errname(rc));
    for (const char *p = why; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            printf("\\u%04x", (unsigned char)*p);
        else
            putchar(*p);
    }
    printf("\"}\n");
}

/* Prints the op table generated from VKVP_OPS as one JSON object. */
static void print_ops(void)
{
    const char *sep = "";
    putchar('{');
#define VKVP_DUMP_OP_(name, value, lower, req, rep)                                                \
    printf("%s\"%s\":%d", sep, vkvp_op_name(value), value);                                        \
    sep = ",";
    VKVP_OPS(VKVP_DUMP_OP_)
#undef VKVP_DUMP_OP_
    printf("}\n");
}

int main(int argc, char **argv)
{
    size_t len = 0;
    char why[VKVP_WHY_LEN] = "";
    char *json = NULL;
    int rc, op = 0;
    if (argc == 2 && strcmp(argv[1], "--ops") == 0) {
        print_ops();
        return 0;
    } else if (argc == 3 && strcmp(argv[1], "--reply") == 0) {
        op = atoi(argv[2]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: vkvp_dump [--reply OP | --ops] < frame\n");
        return 2;
    }
    unsigned char *buf = read_stdin(&len);
    if (!buf) {
        fprintf(stderr, "vkvp_dump: cannot read stdin\n");
        return 2;
    }
    if (op) {
        vkvp_reply *rep;
        if ((rc = vkvp_decode_reply(buf, len, (vkvp_op)op, &rep, why, sizeof(why))) == 0) {
            rc = vkvp_reply_to_json(rep, &json);
            vkvp_reply_free(rep);
        }
    } else {
        vkvp_request *req;
        if ((rc = vkvp_decode_request(buf, len, &req, why, sizeof(why))) == 0) {
            rc = vkvp_request_to_json(req, &json);
            vkvp_request_free(req);
        }
    }
    free(buf);
    if (rc != 0) {
        print_error(rc, why);
        return 1;
    }
    printf("%s\n", json);
    free(json);
    return 0;
}
