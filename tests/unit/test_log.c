/* Unit: the log's line format (src/core/log.c), read back from stderr redirected to a file:
 * non-ASCII text escaped in both formats (well-formed UTF-8 as \uXXXX in JSON, anything else
 * as \xNN), and long messages and values cut, so a line stays within PIPE_BUF. */
#include "rydes/log.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Logs one event with stderr redirected to a temporary file; returns the line (caller frees). */
static char *logged(enum log_format format, const char *msg, const char *value)
{
    char path[] = "/tmp/rydes-test-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    log_configure(LOG_LEVEL_INFO, format);
    struct log_field f[] = {LOG_STR("v", value)};
    log_event(LOG_LEVEL_INFO, msg, f, 1);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *line = calloc(1, (size_t)n + 1);
    ck_assert_int_eq(pread(fd, line, (size_t)n, 0), n);
    close(fd);
    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    return line;
}

START_TEST(json_keeps_text_and_escapes_bytes)
{
    char *line = logged(LOG_FORMAT_JSON, "caf\xc3\xa9 \xf0\x9f\x98\x80", "a\xff\xc0\x80\"b");
    ck_assert_msg(strstr(line, "\"msg\":\"caf\\u00e9 \\ud83d\\ude00\""), "%s", line);
    ck_assert_msg(strstr(line, "\"v\":\"a\\\\xff\\\\xc0\\\\x80\\\"b\""), "%s", line);
    free(line);
    /* a backslash the client sent reads back doubled: not the escape of a byte */
    line = logged(LOG_FORMAT_JSON, "m", "\\xff");
    ck_assert_msg(strstr(line, "\"v\":\"\\\\\\\\xff\""), "%s", line);
    for (const char *p = line; *p; p++)
        ck_assert_msg((unsigned char)*p < 0x80, "a byte past ASCII in %s", line);
    free(line);
}
END_TEST

START_TEST(text_escapes_the_message_too)
{
    /* NEL (C2 85) and a CSI (9B): line breaks and escape sequences to some viewers */
    char *line = logged(LOG_FORMAT_TEXT, "path /a\xc2\x85x\x9b[2J\n", "v\xc3\xa9");
    ck_assert_msg(strstr(line, "path /a\\xc2\\x85x\\x9b[2J\\x0a v=v\\xc3\\xa9\n"), "%s", line);
    ck_assert_ptr_eq(strchr(line, '\n'), line + strlen(line) - 1);
    free(line);
}
END_TEST

START_TEST(long_values_are_cut)
{
    char big[20000];
    memset(big, 0xff, sizeof big - 1); /* each byte escapes to four bytes, or five in JSON */
    big[sizeof big - 1] = '\0';
    for (int format = LOG_FORMAT_TEXT; format <= LOG_FORMAT_JSON; format++) {
        char *line = logged((enum log_format)format, big, big);
        ck_assert_msg(strlen(line) < 4096, "a line of %zu bytes", strlen(line));
        ck_assert_msg(strstr(line, "...(+"), "%.200s", line);
        free(line);
    }
    /* a cut value without spaces stays one unquoted key=value: the mark has no space */
    char plain[2001];
    memset(plain, 'a', 2000);
    plain[2000] = '\0';
    char *line = logged(LOG_FORMAT_TEXT, "m", plain);
    ck_assert_msg(strstr(line, " v=aaaa") && strstr(line, "a...(+976B)\n"), "%s", line);
    free(line);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, json_keeps_text_and_escapes_bytes);
    tcase_add_test(tc, text_escapes_the_message_too);
    tcase_add_test(tc, long_values_are_cut);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
