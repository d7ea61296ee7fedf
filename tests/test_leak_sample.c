/* Sampling real processes: 200 descriptors and sockets opened by the test
 * are all counted, by kind; a real TCP connection on 127.0.0.1 is counted
 * by state; a detector watching a child process sees it and then sees it
 * exit; bad input. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "puffinflow/leak.h"
#include "test.h"

static void
test_leak_sample_counts_200_fds_and_sockets_by_kind(void **state)
{
    pf_leak_sample_t before;
    pf_leak_sample_t after;
    pf_leak_sample_t closed;
    struct sockaddr_in addr;
    int fds[200];
    int n = 0;
    int i;

    (void)state;
    assert_pf_ok(pf_leak_sample_process(0, &before));
    /* 100 files, 40 Unix socket pairs (80 sockets), 20 UDP sockets. */
    for (i = 0; i < 100; i++) {
        fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[n] >= 0);
        n++;
    }
    for (i = 0; i < 40; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, &fds[n]), 0);
        n += 2;
    }
    /* Bound: the kernel lists a UDP socket in /proc/net/udp only once it
     * has an address (an unbound one counts as "other"). */
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < 20; i++) {
        fds[n] = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(fds[n] >= 0);
        assert_int_equal(bind(fds[n], (struct sockaddr *)&addr, sizeof(addr)),
                         0);
        n++;
    }
    assert_int_equal(n, 200);
    assert_pf_ok(pf_leak_sample_process(0, &after));
    assert_int_equal(after.open_fds, before.open_fds + 200);
    assert_int_equal(after.sockets, before.sockets + 100);
    assert_int_equal(after.unix_sockets, before.unix_sockets + 80);
    assert_int_equal(after.udp, before.udp + 20);
    assert_int_equal(after.connections, before.connections + 20);
    assert_int_equal(after.tcp, before.tcp);
    assert_true(after.rss_bytes > 0);
    assert_true(after.threads >= 1);
    assert_true(after.fd_limit == -1 || after.fd_limit >= after.open_fds);
    assert_true(after.memory_limit_bytes > 0);
    assert_true(after.memory_fraction > 0.0 && after.memory_fraction < 1.0);
    assert_int_equal(after.pid, 0);
    for (i = 0; i < n; i++) {
        close(fds[i]);
    }
    assert_pf_ok(pf_leak_sample_process(0, &closed));
    assert_int_equal(closed.open_fds, before.open_fds);
    assert_int_equal(closed.sockets, before.sockets);
}

static void
test_leak_sample_counts_loopback_tcp_by_state(void **state)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    pf_leak_sample_t before;
    pf_leak_sample_t after;
    int lsock;
    int client;
    int server;
    int one = 1;

    (void)state;
    assert_pf_ok(pf_leak_sample_process(0, &before));
    lsock = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lsock >= 0);
    setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    assert_int_equal(bind(lsock, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(lsock, 4), 0);
    assert_int_equal(getsockname(lsock, (struct sockaddr *)&addr, &len), 0);
    client = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(client >= 0);
    assert_int_equal(connect(client, (struct sockaddr *)&addr, sizeof(addr)),
                     0);
    server = accept(lsock, NULL, NULL);
    assert_true(server >= 0);

    assert_pf_ok(pf_leak_sample_process(0, &after));
    assert_int_equal(after.tcp, before.tcp + 3);
    assert_int_equal(after.connections, before.connections + 3);
    assert_int_equal(after.tcp_by_state[PF_LEAK_TCP_LISTEN],
                     before.tcp_by_state[PF_LEAK_TCP_LISTEN] + 1);
    assert_int_equal(after.tcp_by_state[PF_LEAK_TCP_ESTABLISHED],
                     before.tcp_by_state[PF_LEAK_TCP_ESTABLISHED] + 2);
    assert_string_equal(pf_leak_tcp_state_name(PF_LEAK_TCP_LISTEN), "LISTEN");
    assert_string_equal(pf_leak_tcp_state_name(PF_LEAK_TCP_CLOSE_WAIT),
                        "CLOSE_WAIT");
    close(server);
    close(client);
    close(lsock);
}

static void
test_leak_sample_counts_own_unbound_sockets_by_kind(void **state)
{
    pf_leak_sample_t before;
    pf_leak_sample_t after;
    int tcp = socket(AF_INET6, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int nl = socket(AF_NETLINK, SOCK_RAW, 0);

    (void)state;
    assert_true(tcp >= 0 && udp >= 0);
    close(tcp);
    close(udp);
    if (nl >= 0) {
        close(nl);
    }
    assert_pf_ok(pf_leak_sample_process(0, &before));
    /* No /proc/net table lists these: our own are asked directly. */
    tcp = socket(AF_INET6, SOCK_STREAM, 0);
    udp = socket(AF_INET, SOCK_DGRAM, 0);
    nl = socket(AF_NETLINK, SOCK_RAW, 0);
    assert_pf_ok(pf_leak_sample_process(0, &after));
    assert_int_equal(after.tcp, before.tcp + 1);
    assert_int_equal(after.tcp_by_state[7], before.tcp_by_state[7] + 1);
    assert_string_equal(pf_leak_tcp_state_name(7), "CLOSE");
    assert_int_equal(after.udp, before.udp + 1);
    if (nl >= 0) {
        assert_int_equal(after.other_sockets, before.other_sockets + 1);
        close(nl);
    }
    assert_int_equal(after.sockets, before.sockets + 2 + (nl >= 0));
    close(tcp);
    close(udp);
}

static void
test_leak_sample_bad_input(void **state)
{
    pf_leak_sample_t s;

    (void)state;
    memset(&s, 0x5a, sizeof(s));
    assert_pf_err(pf_leak_sample_process(0, NULL), PF_EINVAL);
    assert_pf_err(pf_leak_sample_process(-1, &s), PF_EINVAL);
    assert_pf_err(pf_leak_sample_process(2147483646, &s), PF_ENOTFOUND);
    assert_int_equal(s.open_fds, INT64_C(0x5a5a5a5a5a5a5a5a));
    assert_string_equal(pf_leak_tcp_state_name(99), "UNKNOWN");
    assert_string_equal(pf_leak_alert_kind_name(PF_LEAK_ALERT_FD_TREND),
                        "fd_trend");
    assert_string_equal(pf_leak_alert_kind_name((pf_leak_alert_kind_t)77),
                        "unknown");
}

static void
test_leak_detector_watches_another_process_until_it_exits(void **state)
{
    pf_leak_config_t cfg;
    pf_leak_detector_t *d;
    pf_leak_report_t rep;
    int gate[2];
    pid_t child;
    char c;
    int status;

    (void)state;
    assert_int_equal(pipe(gate), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* Wait until the parent closes its end, then leave. */
        close(gate[1]);
        while (read(gate[0], &c, 1) > 0) {
        }
        _exit(0);
    }
    close(gate[0]);
    pf_leak_config_init(&cfg);
    cfg.pid = (int)child;
    assert_pf_ok(pf_leak_detector_new(&cfg, &d));
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.sample_error, 0);
    assert_int_equal(rep.sample.pid, (int)child);
    assert_true(rep.sample.open_fds >= 1); /* at least the pipe */
    assert_true(rep.sample.threads >= 1);  /* sanitizers may add one */
    pf_leak_report_free(&rep);

    close(gate[1]);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_pf_ok(pf_leak_detector_check(d, &rep));
    assert_int_equal(rep.sample_error, PF_ENOTFOUND);
    pf_leak_report_free(&rep);
    pf_leak_detector_free(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leak_sample_counts_200_fds_and_sockets_by_kind),
        cmocka_unit_test(test_leak_sample_counts_loopback_tcp_by_state),
        cmocka_unit_test(test_leak_sample_counts_own_unbound_sockets_by_kind),
        cmocka_unit_test(test_leak_sample_bad_input),
        cmocka_unit_test(
            test_leak_detector_watches_another_process_until_it_exits),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
