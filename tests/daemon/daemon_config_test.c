/* vkvd configuration: defaults < INI file < VKV_* environment < flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "vkv/error.h"

static void sizes_parse_with_units_and_reject_junk(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(vkvd_parse_size("65536", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(vkvd_parse_size("4G", &v), 0);
    assert_int_equal(v, 4ull << 30);
    assert_int_equal(vkvd_parse_size("256KiB", &v), 0);
    assert_int_equal(v, 256ull << 10);
    assert_int_not_equal(vkvd_parse_size("-1", &v), 0);
    assert_int_not_equal(vkvd_parse_size("12Q", &v), 0);
    assert_int_not_equal(vkvd_parse_size("", &v), 0);
    assert_int_not_equal(vkvd_parse_size("99999999999T", &v), 0);
}

/* Writes `text` to a temp file; returns its malloc'ed path. */
static char *write_tmp(const char *text)
{
    char *p = strdup("/tmp/vkvd-config-XXXXXX");
    int fd = mkstemp(p);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return p;
}

static void file_env_and_flags_override_in_order(void **state)
{
    (void)state;
    char *path = write_tmp("[vkvd]\ncapacity = 2G\npage_size = 64K\npolicy = lru\n");
    setenv("VKV_CAPACITY", "3G", 1);
    char *argv[] = {"vkvd", "--config", path, "--policy", "s3fifo", NULL};
    vkvd_config cfg;
    assert_int_equal(vkvd_config_from_args(&cfg, 5, argv), 0);
    assert_int_equal(cfg.capacity, 3ull << 30); /* env beats the file */
    assert_int_equal(cfg.page_size, 64u << 10); /* from the file */
    assert_string_equal(cfg.policy, "s3fifo");  /* flag beats the file */
    unsetenv("VKV_CAPACITY");
    unlink(path);
    free(path);
}

static void unknown_keys_and_bad_values_are_errors(void **state)
{
    (void)state;
    vkvd_config cfg;
    vkvd_config_defaults(&cfg);
    char *p1 = write_tmp("[vkvd]\ncapacityy = 2G\n");
    assert_int_not_equal(vkvd_config_load_file(&cfg, p1), 0);
    char *p2 = write_tmp("[other]\ncapacity = 2G\n");
    assert_int_not_equal(vkvd_config_load_file(&cfg, p2), 0);
    char *p3 = write_tmp("[vkvd]\nbackend = gpu\n");
    assert_int_not_equal(vkvd_config_load_file(&cfg, p3), 0);
    assert_int_not_equal(vkvd_config_load_file(&cfg, "/nonexistent/vkvd.ini"), 0);
    assert_int_equal(vkvd_config_set(&cfg, "no-such", "1"), VKV_ENOTFOUND);
    assert_int_equal(vkvd_config_set(&cfg, "lease-ttl-ms", "0"), VKV_EINVAL);
    assert_int_equal(vkvd_config_set(&cfg, "spill-on-exit", "maybe"), VKV_EINVAL);
    unlink(p1);
    unlink(p2);
    unlink(p3);
    free(p1);
    free(p2);
    free(p3);
}

static void cross_field_rules_are_validated(void **state)
{
    (void)state;
    vkvd_config cfg;
    vkvd_config_defaults(&cfg);
    assert_int_equal(vkvd_config_validate(&cfg), 0);
    cfg.page_size = 3000;
    assert_int_not_equal(vkvd_config_validate(&cfg), 0);
    vkvd_config_defaults(&cfg);
    cfg.capacity = cfg.slab_size / 2;
    assert_int_not_equal(vkvd_config_validate(&cfg), 0);
    vkvd_config_defaults(&cfg);
    char *argv[] = {"vkvd", "--page-size", "5000", NULL};
    assert_int_equal(vkvd_config_from_args(&cfg, 3, argv), VKV_EINVAL);
    char *argv2[] = {"vkvd", "stray", NULL};
    assert_int_equal(vkvd_config_from_args(&cfg, 2, argv2), VKV_EINVAL);
}

static void defaults_follow_xdg_directories(void **state)
{
    (void)state;
    setenv("XDG_STATE_HOME", "/tmp/xdg-state-test", 1);
    vkvd_config cfg;
    vkvd_config_defaults(&cfg);
    assert_string_equal(cfg.state_dir, "/tmp/xdg-state-test/vkv");
    unsetenv("XDG_STATE_HOME");
    setenv("XDG_RUNTIME_DIR", "/nonexistent-run", 1); /* not writable: fallback */
    vkvd_config_defaults(&cfg);
    char want[64];
    snprintf(want, sizeof want, "/tmp/vkv-%u", (unsigned)getuid());
    assert_string_equal(cfg.rundir, want);
    unsetenv("XDG_RUNTIME_DIR");
}

/* The remote tier's settings: off by default; file < env < flags; the
 * password is never printed. */
/* vkvd_config_print of cfg into buf[0..cap) as a NUL-terminated string. */
static void print_config(const vkvd_config *cfg, char *buf, size_t cap)
{
    memset(buf, 0, cap);
    FILE *f = fmemopen(buf, cap - 1, "w");
    assert_non_null(f);
    vkvd_config_print(cfg, f);
    fclose(f);
}

static void remote_settings_parse_and_hide_the_password(void **state)
{
    (void)state;
    vkvd_config cfg;
    vkvd_config_defaults(&cfg);
    assert_string_equal(cfg.remote, "");
    assert_true(cfg.remote_publish);
    char *path = write_tmp("[vkvd]\nremote = redis://h1:7000,h2:7001\nremote_password = s3cret\n"
                           "remote-ttl = 60\nremote-piece-size = 1M\n");
    setenv("VKV_REMOTE_USER", "fleet", 1);
    char *argv[] = {"vkvd", "--config", path, "--remote-publish", "no", NULL};
    assert_int_equal(vkvd_config_from_args(&cfg, 5, argv), 0);
    assert_string_equal(cfg.remote, "redis://h1:7000,h2:7001");
    assert_string_equal(cfg.remote_user, "fleet");
    assert_string_equal(cfg.remote_password, "s3cret");
    assert_int_equal(cfg.remote_ttl_s, 60);
    assert_int_equal(cfg.remote_piece, 1u << 20);
    assert_false(cfg.remote_publish);
    char buf[4096];
    print_config(&cfg, buf, sizeof buf);
    assert_non_null(strstr(buf, "remote = redis://h1:7000,h2:7001"));
    assert_null(strstr(buf, "s3cret"));
    assert_int_equal(vkvd_config_set(&cfg, "remote-prefix", "bad{tag}"), VKV_EINVAL);
    assert_int_equal(vkvd_config_set(&cfg, "remote-threads", "0"), VKV_EINVAL);
    assert_int_equal(vkvd_config_set(&cfg, "remote", ""), 0);
    assert_string_equal(cfg.remote, "");
    unsetenv("VKV_REMOTE_USER");
    unlink(path);
    free(path);
}

static void scheduling_settings_parse_and_print(void **state)
{
    (void)state;
    vkvd_config cfg;
    vkvd_config_defaults(&cfg);
    assert_string_equal(cfg.cold_thread_policy, "normal");
    assert_int_equal(cfg.cold_thread_nice, 10);
    assert_int_equal(cfg.serve_slice_us, 0);
    assert_int_equal(vkvd_config_set(&cfg, "cold-thread-policy", "batch"), 0);
    assert_string_equal(cfg.cold_thread_policy, "batch");
    assert_int_equal(vkvd_config_set(&cfg, "cold_thread_policy", "normal"), 0);
    assert_string_equal(cfg.cold_thread_policy, "normal");
    assert_int_equal(vkvd_config_set(&cfg, "cold-thread-policy", "fifo"), VKV_EINVAL);
    assert_int_equal(vkvd_config_set(&cfg, "cold-thread-policy", ""), VKV_EINVAL);
    assert_string_equal(cfg.cold_thread_policy, "normal");
    assert_int_equal(vkvd_config_set(&cfg, "cold-thread-nice", "19"), 0);
    assert_int_equal(cfg.cold_thread_nice, 19);
    assert_int_equal(vkvd_config_set(&cfg, "cold-thread-nice", "20"), VKV_EINVAL);
    assert_int_equal(vkvd_config_set(&cfg, "cold-thread-nice", "-1"), VKV_EINVAL);
    assert_int_equal(vkvd_config_set(&cfg, "serve-slice-us", "100000"), 0);
    assert_int_equal(vkvd_config_set(&cfg, "serve-slice-us", "100001"), VKV_EINVAL);
    char *path = write_tmp("[vkvd]\ncold_thread_policy = batch\nserve-slice-us = 250\n");
    setenv("VKV_COLD_THREAD_NICE", "3", 1);
    char *argv[] = {"vkvd", "--config", path, "--cold-thread-policy", "idle", NULL};
    assert_int_equal(vkvd_config_from_args(&cfg, 5, argv), 0);
    assert_string_equal(cfg.cold_thread_policy, "idle"); /* the flag beats the file */
    assert_int_equal(cfg.serve_slice_us, 250);
    assert_int_equal(cfg.cold_thread_nice, 3);
    unsetenv("VKV_COLD_THREAD_NICE");
    char buf[4096];
    print_config(&cfg, buf, sizeof buf);
    assert_non_null(strstr(buf, "cold-thread-policy = idle\n"));
    assert_non_null(strstr(buf, "cold-thread-nice = 3\n"));
    assert_non_null(strstr(buf, "serve-slice-us = 250\n"));
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes_parse_with_units_and_reject_junk),
        cmocka_unit_test(file_env_and_flags_override_in_order),
        cmocka_unit_test(unknown_keys_and_bad_values_are_errors),
        cmocka_unit_test(cross_field_rules_are_validated),
        cmocka_unit_test(defaults_follow_xdg_directories),
        cmocka_unit_test(remote_settings_parse_and_hide_the_password),
        cmocka_unit_test(scheduling_settings_parse_and_print),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
