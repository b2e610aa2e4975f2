/*
 * latency_relay: adds one-way latency to a byte stream, keeping throughput.
 *
 *   latency_relay --delay-us=N -- CMD [ARGS...]
 *       runs CMD with pipes: what arrives on stdin goes to CMD's stdin, what
 *       CMD writes to its stdout goes to stdout, each byte N microseconds
 *       after it arrived. Exits with CMD's status.
 *   latency_relay --delay-us=N --listen=127.0.0.1:PORT --connect=127.0.0.1:PORT
 *       a TCP relay: each connection accepted on --listen gets its own
 *       connection to --connect, delayed both ways. PORT 0 for --listen
 *       picks a free port; the port is printed on stdout once listening.
 *       Runs until killed.
 *   latency_relay --free-port
 *       prints a loopback TCP port that was free a moment ago.
 *
 * Each direction is a queue of timestamped chunks: a reader thread stamps
 * what it reads with its arrival time, a writer thread sends each chunk
 * when its time has come. Many chunks are in flight at once, as on a long
 * wire, rather than one round trip per chunk. Only loopback addresses are
 * accepted: this is a test tool.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Bytes a direction may hold before its reader stops reading. */
#define QUEUE_LIMIT (64u << 20)
#define CHUNK_MAX (64u << 10)

struct chunk {
	struct chunk *next;
	uint64_t due_ns;
	size_t len;
	char data[];
};

/* One direction: bytes from in to out, each delay_ns late. */
struct lane {
	int in, out;
	int is_socket;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct chunk *head, *tail;
	size_t queued;
	int eof;
	int dead;
	pthread_t reader, writer;
};

static uint64_t delay_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void *lane_reader(void *arg)
{
	struct lane *l = arg;

	for (;;) {
		struct chunk *c = malloc(sizeof(*c) + CHUNK_MAX);
		ssize_t n;

		if (!c)
			break;
		n = read(l->in, c->data, CHUNK_MAX);
		if (n == -1 && errno == EINTR) {
			free(c);
			continue;
		}
		if (n <= 0) {
			free(c);
			break;
		}
		c->len = (size_t)n;
		c->due_ns = now_ns() + delay_ns;
		c->next = NULL;
		pthread_mutex_lock(&l->lock);
		while (l->queued > QUEUE_LIMIT && !l->dead)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->dead) {
			pthread_mutex_unlock(&l->lock);
			free(c);
			continue; /* drain to EOF: the peer must not block */
		}
		if (l->tail)
			l->tail->next = c;
		else
			l->head = c;
		l->tail = c;
		l->queued += c->len;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
	}
	pthread_mutex_lock(&l->lock);
	l->eof = 1;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *lane_writer(void *arg)
{
	struct lane *l = arg;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		struct chunk *c;

		while (!l->head && !l->eof)
			pthread_cond_wait(&l->cond, &l->lock);
		c = l->head;
		if (!c)
			break;
		l->head = c->next;
		if (!l->head)
			l->tail = NULL;
		pthread_mutex_unlock(&l->lock);
		sleep_until(c->due_ns);
		if (write_all(l->out, c->data, c->len) != 0) {
			free(c);
			pthread_mutex_lock(&l->lock);
			l->dead = 1;
			/* Free what is queued; the reader drops the rest. */
			while (l->head) {
				c = l->head;
				l->head = c->next;
				free(c);
			}
			l->tail = NULL;
			l->queued = 0;
			pthread_cond_broadcast(&l->cond);
			if (l->is_socket)
				shutdown(l->in, SHUT_RD);
			break;
		}
		pthread_mutex_lock(&l->lock);
		l->queued -= c->len;
		pthread_cond_broadcast(&l->cond);
		free(c);
	}
	pthread_mutex_unlock(&l->lock);
	/* The end of the stream travels with the same delay as its bytes. */
	if (l->is_socket)
		shutdown(l->out, SHUT_WR);
	else
		close(l->out);
	return NULL;
}

static int lane_start(struct lane *l, int in, int out, int is_socket)
{
	memset(l, 0, sizeof(*l));
	l->in = in;
	l->out = out;
	l->is_socket = is_socket;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	if (pthread_create(&l->reader, NULL, lane_reader, l) != 0)
		return -1;
	if (pthread_create(&l->writer, NULL, lane_writer, l) != 0)
		return -1;
	return 0;
}

static void lane_join(struct lane *l)
{
	pthread_join(l->reader, NULL);
	pthread_join(l->writer, NULL);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
}

/* ---- pipe mode ---------------------------------------------------------- */

static int run_pipe(char **cmd)
{
	int to_child[2], from_child[2], status;
	struct lane up, down;
	pid_t pid;

	if (pipe(to_child) != 0 || pipe(from_child) != 0) {
		perror("latency_relay: pipe");
		return 1;
	}
	pid = fork();
	if (pid == -1) {
		perror("latency_relay: fork");
		return 1;
	}
	if (pid == 0) {
		dup2(to_child[0], 0);
		dup2(from_child[1], 1);
		close(to_child[0]);
		close(to_child[1]);
		close(from_child[0]);
		close(from_child[1]);
		execvp(cmd[0], cmd);
		fprintf(stderr, "latency_relay: %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	close(to_child[0]);
	close(from_child[1]);
	if (lane_start(&up, 0, to_child[1], 0) != 0 ||
	    lane_start(&down, from_child[0], 1, 0) != 0) {
		fprintf(stderr, "latency_relay: cannot start threads\n");
		kill(pid, SIGTERM);
		return 1;
	}
	/* The child ends when its stdin closes: after the upstream lane. */
	lane_join(&up);
	lane_join(&down);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- TCP mode ----------------------------------------------------------- */

/* "127.0.0.1:PORT" -> sa; loopback only. */
static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	const char *colon = strrchr(s, ':');
	char host[64], *end;
	unsigned long port;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -1;
	if ((ntohl(sa->sin_addr.s_addr) >> 24) != 127)
		return -1;
	return 0;
}

struct conn {
	int client, server;
};

static void set_nodelay(int fd)
{
	int one = 1;

	/* The relay adds the latency; Nagle would add more, unevenly. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void *serve_conn(void *arg)
{
	struct conn *c = arg;
	struct lane up, down;

	if (lane_start(&up, c->client, c->server, 1) == 0 &&
	    lane_start(&down, c->server, c->client, 1) == 0) {
		lane_join(&up);
		lane_join(&down);
	}
	close(c->client);
	close(c->server);
	free(c);
	return NULL;
}

static int listen_on(struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)sa, sizeof(*sa)) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)sa, &len) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int run_tcp(const char *listen_spec, const char *connect_spec)
{
	struct sockaddr_in lsa, csa;
	int lfd;

	if (parse_addr(listen_spec, &lsa) != 0 || parse_addr(connect_spec, &csa) != 0) {
		fprintf(stderr, "latency_relay: addresses must be 127.x.x.x:PORT\n");
		return 2;
	}
	lfd = listen_on(&lsa);
	if (lfd == -1) {
		perror("latency_relay: listen");
		return 1;
	}
	printf("%u\n", (unsigned)ntohs(lsa.sin_port));
	fflush(stdout);
	for (;;) {
		struct conn *c;
		pthread_t t;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("latency_relay: accept");
			return 1;
		}
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->client = fd;
		c->server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->server == -1 || connect(c->server, (struct sockaddr *)&csa, sizeof(csa)) != 0) {
			perror("latency_relay: connect");
			if (c->server != -1)
				close(c->server);
			close(fd);
			free(c);
			continue;
		}
		set_nodelay(c->client);
		set_nodelay(c->server);
		if (pthread_create(&t, NULL, serve_conn, c) != 0) {
			close(c->client);
			close(c->server);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
}

static int free_port(void)
{
	struct sockaddr_in sa;
	int fd;

	parse_addr("127.0.0.1:0", &sa);
	fd = listen_on(&sa);
	if (fd == -1) {
		perror("latency_relay: bind");
		return 1;
	}
	printf("%u\n", (unsigned)ntohs(sa.sin_port));
	close(fd);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: latency_relay --delay-us=N -- CMD [ARGS...]\n"
			"       latency_relay --delay-us=N --listen=127.0.0.1:PORT --connect=127.0.0.1:PORT\n"
			"       latency_relay --free-port\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *listen_spec = NULL, *connect_spec = NULL;
	int i;

	signal(SIGPIPE, SIG_IGN);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strncmp(a, "--delay-us=", 11) == 0) {
			char *end;
			unsigned long long us;

			errno = 0;
			us = strtoull(a + 11, &end, 10);
			if (errno || end == a + 11 || *end || us > 60000000ULL)
				usage();
			delay_ns = us * 1000u;
		} else if (strncmp(a, "--listen=", 9) == 0) {
			listen_spec = a + 9;
		} else if (strncmp(a, "--connect=", 10) == 0) {
			connect_spec = a + 10;
		} else if (strcmp(a, "--free-port") == 0) {
			return free_port();
		} else if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else {
			usage();
		}
	}
	if (listen_spec || connect_spec) {
		if (!listen_spec || !connect_spec || i < argc)
			usage();
		return run_tcp(listen_spec, connect_spec);
	}
	if (i >= argc)
		usage();
	return run_pipe(argv + i);
}
