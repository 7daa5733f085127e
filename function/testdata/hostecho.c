/* hostecho answers with where and what it runs: the replica's HOSTNAME, the
 * image's TEST_VERSION, the secret in the file SECRET_FILE names, whether
 * /tmp is writable; then it echoes the request body. The fork-mode test
 * function of function/swarm_docker_test.go, built with gcc -static. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *env(const char *name) {
	const char *v = getenv(name);
	return v ? v : "";
}

int main(void) {
	printf("host=%s version=%s", env("HOSTNAME"), env("TEST_VERSION"));
	if (*env("SECRET_FILE")) {
		char secret[256] = "";
		FILE *f = fopen(env("SECRET_FILE"), "r");
		if (f) {
			secret[fread(secret, 1, sizeof secret - 1, f)] = 0;
			fclose(f);
			printf(" secret=%s", secret);
		} else {
			printf(" secret=unreadable");
		}
	}
	char probe[64];
	snprintf(probe, sizeof probe, "/tmp/probe.%d", (int)getpid());
	int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	printf(" tmp=%s\n", fd >= 0 ? "writable" : "read-only");
	if (fd >= 0) {
		close(fd);
		unlink(probe);
	}
	fflush(stdout);

	char buf[4096];
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return 1;
	return n < 0 ? 1 : 0;
}
