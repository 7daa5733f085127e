/*
 * spawnloop.c: the floor for the watchdog's fork mode. Each iteration does
 * what fork mode must do for one request and nothing else: two pipes,
 * posix_spawn of the program with them as stdin and stdout, write the
 * payload, close stdin, read stdout to EOF (checking it equals the payload),
 * waitpid (checking exit status 0). Serial, one child at a time.
 *
 *   spawnloop [-n ITERATIONS | -d SECONDS] [-p PAYLOAD] -- /abs/prog [args...]
 *
 * It prints one JSON line: iterations, wall time and CPU time of itself plus
 * its reaped children (getrusage RUSAGE_SELF + RUSAGE_CHILDREN, utime +
 * stime), and CPU per iteration. The payload must fit in a pipe buffer
 * (it is written before stdout is read); it is capped at 4096 bytes.
 * Exit status: 0 on success, 1 on a failed iteration, 2 on a usage error.
 *
 * Build: gcc -O2 -o spawnloop spawnloop.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_PAYLOAD 4096

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv(struct timeval t)
{
	return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

static int usage(void)
{
	fprintf(stderr, "usage: spawnloop [-n ITERATIONS | -d SECONDS] [-p PAYLOAD] -- /abs/prog [args...]\n");
	return 2;
}

/* once runs the program one time; it returns 0 on success, -1 on failure. */
static int once(char **argv, const char *payload, size_t len)
{
	int in[2], out[2];
	char buf[MAX_PAYLOAD + 1];
	size_t got = 0;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, rc = 0;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		perror("spawnloop: pipe2");
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	errno = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (errno != 0) {
		perror("spawnloop: posix_spawn");
		close(in[1]);
		close(out[0]);
		return -1;
	}
	if (write(in[1], payload, len) != (ssize_t)len) {
		perror("spawnloop: write");
		rc = -1;
	}
	close(in[1]);
	for (;;) {
		ssize_t n = read(out[0], buf + got, sizeof buf - got);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("spawnloop: read");
			rc = -1;
			break;
		}
		got += (size_t)n;
		if (got == sizeof buf) {
			fprintf(stderr, "spawnloop: output longer than the payload\n");
			rc = -1;
			break;
		}
	}
	close(out[0]);
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			perror("spawnloop: waitpid");
			return -1;
		}
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "spawnloop: %s: bad exit status %d\n", argv[0], st);
		return -1;
	}
	if (rc == 0 && (got != len || memcmp(buf, payload, len) != 0)) {
		fprintf(stderr, "spawnloop: %s: output differs from the payload\n", argv[0]);
		return -1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	long iterations = 0;
	double seconds = 0;
	const char *payload = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	int i = 1;

	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (i + 1 >= argc)
			return usage();
		if (strcmp(argv[i], "-n") == 0)
			iterations = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "-d") == 0)
			seconds = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "-p") == 0)
			payload = argv[++i];
		else
			return usage();
	}
	if (i >= argc - 1 || (iterations > 0) == (seconds > 0) || iterations < 0 || seconds < 0)
		return usage();
	char **prog = argv + i + 1;
	size_t len = strlen(payload);
	if (len > MAX_PAYLOAD || prog[0][0] != '/')
		return usage();

	double start = now(), end = start + seconds;
	long n = 0;
	while (iterations > 0 ? n < iterations : now() < end) {
		if (once(prog, payload, len) < 0)
			return 1;
		n++;
	}
	double wall = now() - start;

	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	double selfcpu = tv(self.ru_utime) + tv(self.ru_stime);
	double kidcpu = tv(kids.ru_utime) + tv(kids.ru_stime);
	printf("{\"program\":\"%s\",\"iterations\":%ld,\"payload_bytes\":%zu,"
	       "\"wall_s\":%.6f,\"cpu_s\":%.6f,\"self_cpu_s\":%.6f,\"children_cpu_s\":%.6f,"
	       "\"cpu_per_iter_us\":%.3f}\n",
	       prog[0], n, len, wall, selfcpu + kidcpu, selfcpu, kidcpu,
	       (selfcpu + kidcpu) / (double)n * 1e6);
	return 0;
}
