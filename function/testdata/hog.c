/* hog misbehaves on request, to show a replica's limits hold: the fork-mode
 * test function of TestSwarmReplicaLimits (function/swarm_docker_test.go),
 * built with gcc -static. The request body says what to do:
 *
 *   fork  a fork bomb: every process forks as fast as it can, its children
 *         too, for BOMB_SECONDS (3); then they all exit, and the first
 *         process answers how many forks it made and how many failed, with
 *         the error (EAGAIN once the replica's pids limit is reached).
 *   mem   a memory hog: allocate and touch 1 MiB after 1 MiB until the
 *         kernel kills it (the replica's memory limit).
 *   else  answer "host=<HOSTNAME>".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BOMB_SECONDS 3

static int forkbomb(void) {
	time_t deadline = time(NULL) + BOMB_SECONDS;
	pid_t root = getpid();
	long forked = 0, failed = 0;
	int err = 0;
	while (time(NULL) < deadline) {
		pid_t p = fork();
		if (p == 0)
			continue; /* the child joins the bomb */
		if (p < 0) {
			if (getpid() == root) {
				failed++;
				err = errno;
			}
			usleep(2000);
			continue;
		}
		if (getpid() == root)
			forked++;
	}
	if (getpid() != root)
		_exit(0);
	while (wait(NULL) > 0)
		;
	printf("forked=%ld failed=%ld error=%s\n", forked, failed, failed ? strerror(err) : "none");
	return 0;
}

static int memhog(void) {
	const size_t chunk = 1 << 20;
	for (size_t mib = 0;; mib++) {
		char *p = malloc(chunk);
		if (!p) {
			printf("malloc failed after %zu MiB\n", mib);
			return 1;
		}
		memset(p, 1, chunk);
	}
}

int main(void) {
	char cmd[16] = "";
	ssize_t n = read(0, cmd, sizeof cmd - 1);
	cmd[n > 0 ? n : 0] = 0;
	if (strcmp(cmd, "fork") == 0)
		return forkbomb();
	if (strcmp(cmd, "mem") == 0)
		return memhog();
	const char *host = getenv("HOSTNAME");
	printf("host=%s\n", host ? host : "");
	return 0;
}
