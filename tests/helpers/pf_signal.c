/* pf_signal FILE SIDE_FILE [--interval-us=N] [--bs=N]
 *
 * Signal handlers that read while the library works. A timer (SIGALRM,
 * every --interval-us, default 300) interrupts the program; the handler
 * preads 64 bytes of SIDE_FILE (offset-encoded with key 0x5a) at a moving
 * offset and checks them. Meanwhile main reads FILE (offset-encoded, key 0)
 * to its end and checks every byte. A signal that lands inside the library
 * must neither deadlock (the handler's read goes straight through) nor
 * disturb the data. Prints the data read; the number of signals goes to
 * stderr (it varies). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "common.h"

static int side_fd;
static volatile sig_atomic_t handled, handler_bad;

static void on_alarm(int sig)
{
	(void)sig;
	int saved = errno;
	unsigned char b[64];
	off_t at = (off_t)((handled * 4104) % (256 * 1024));
	ssize_t r = pread(side_fd, b, sizeof(b), at);
	if (r != (ssize_t)sizeof(b) || check_offsets(b, at, sizeof(b), 0x5a) >= 0)
		handler_bad = 1;
	/* A read() too, on the side file's own offset: rewind it first. */
	if (lseek(side_fd, at, SEEK_SET) != at || read(side_fd, b, 16) != 16 ||
	    check_offsets(b, at, 16, 0x5a) >= 0)
		handler_bad = 1;
	handled++;
	errno = saved;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *side = NULL, *v;
	long interval = 300;
	size_t bs = 65536;
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "interval-us")))
			interval = (long)parse_size(v);
		else if ((v = opt_value(argv[i], "bs")))
			bs = (size_t)parse_size(v);
		else if (!path)
			path = argv[i];
		else
			side = argv[i];
	}
	if (!path || !side)
		die("usage: pf_signal FILE SIDE_FILE [--interval-us=N] [--bs=N]");
	int fd = open(path, O_RDONLY);
	side_fd = open(side, O_RDONLY);
	if (fd < 0 || side_fd < 0)
		die("open: %m");

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: interrupted waits return EINTR */
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, interval }, { 0, interval } };
	setitimer(ITIMER_REAL, &it, NULL);

	unsigned char *buf = xmalloc(bs);
	off_t pos = 0;
	uint64_t hash = FNV_INIT;
	long bad = 0, eintr = 0;
	for (;;) {
		ssize_t r = read(fd, buf, bs);
		if (r < 0 && errno == EINTR) {
			eintr++;
			continue;
		}
		if (r < 0)
			die("read: %m");
		if (r == 0)
			break;
		off_t wrong = check_offsets(buf, pos, (size_t)r, 0);
		if (wrong >= 0 && bad++ < 5)
			printf("BAD DATA at %lld+%zd, first wrong byte %lld\n", (long long)pos, r,
			       (long long)wrong);
		hash = fnv1a(hash, buf, (size_t)r);
		pos += r;
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	printf("read %lld hash=%016llx offset=%lld bad=%ld handler_bad=%d\n", (long long)pos,
	       (unsigned long long)hash, (long long)lseek(fd, 0, SEEK_CUR), bad, (int)handler_bad);
	fprintf(stderr, "signals handled: %ld, EINTR: %ld\n", (long)handled, eintr);
	free(buf);
	return bad || handler_bad ? 1 : 0;
}
