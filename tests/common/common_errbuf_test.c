/* tests/common/common_errbuf_test.c - vkv_errbuf: formats into the caller's
 * buffer (truncated, NUL-terminated, none at all) and returns the code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/errbuf.h"
#include "vkv/error.h"

static void formats_the_reason_and_returns_the_code(void **state)
{
    (void)state;
    char err[64] = "untouched";
    assert_int_equal(vkv_errbuf(err, sizeof err, VKV_ECORRUPT, "tensor %s: %d dims", "k", 9),
                     VKV_ECORRUPT);
    assert_string_equal(err, "tensor k: 9 dims");
    assert_int_equal(vkv_errbuf(err, sizeof err, VKV_OK, "fine"), VKV_OK);
    assert_string_equal(err, "fine");
}

static void truncates_to_the_buffer(void **state)
{
    (void)state;
    char err[8];
    memset(err, 'x', sizeof err);
    assert_int_equal(vkv_errbuf(err, 5, VKV_EIO, "%s", "abcdefgh"), VKV_EIO);
    assert_string_equal(err, "abcd");
    assert_int_equal(err[5], 'x'); /* nothing written past errlen */
}

static void no_buffer_is_fine(void **state)
{
    (void)state;
    char err[4] = "abc";
    assert_int_equal(vkv_errbuf(NULL, 64, VKV_ENOMEM, "lost %d", 1), VKV_ENOMEM);
    assert_int_equal(vkv_errbuf(err, 0, VKV_EPROTO, "lost %d", 2), VKV_EPROTO);
    assert_string_equal(err, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats_the_reason_and_returns_the_code),
        cmocka_unit_test(truncates_to_the_buffer),
        cmocka_unit_test(no_buffer_is_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
