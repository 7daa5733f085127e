/* fn: a static test function for the watchdog's fork and http modes.
 * Usage: fn MODE [ARG]
 *   echo            copy stdin to stdout
 *   env             print the environment, one variable a line
 *   sleep SECONDS   sleep, then echo
 *   crash           write to stderr and exit 3
 *   segv            die of SIGSEGV
 *   flood           write to stdout forever
 *   ignoreterm      ignore SIGTERM, then sleep forever
 *   grandchild FILE fork a child that writes its pid to FILE and sleeps
 *                   forever holding stdout; the parent answers and exits 0
 *   detach FILE exit|wait
 *                   fork a child that leaves the process group (setsid),
 *                   writes its pid to FILE and sleeps 15 s holding stdin,
 *                   stdout and stderr, reading nothing; the parent answers
 *                   and exits 0 (exit) or sleeps forever (wait)
 *   bytes N         write N bytes to stdout
 *   hog MIB         touch MIB mebibytes of memory, then echo
 *   bomb            by request: QUERY_STRING "bomb" starts a fork bomb
 *                   (every process forks forever, retrying every 2 ms
 *                   while forks fail, until killed); "sleep" sleeps
 *                   200 ms, then echoes; anything else echoes
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void echo(void) {
	char buf[65536];
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0)
		if (write(1, buf, n) != n)
			exit(1);
}

int main(int argc, char **argv) {
	const char *mode = argc > 1 ? argv[1] : "echo";
	if (!strcmp(mode, "echo")) {
		echo();
	} else if (!strcmp(mode, "env")) {
		for (char **e = environ; *e; e++)
			printf("%s\n", *e);
	} else if (!strcmp(mode, "sleep")) {
		sleep(argc > 2 ? atoi(argv[2]) : 60);
		echo();
	} else if (!strcmp(mode, "crash")) {
		fprintf(stderr, "something went wrong\nfatal: cannot continue\n");
		return 3;
	} else if (!strcmp(mode, "segv")) {
		raise(SIGSEGV);
	} else if (!strcmp(mode, "flood")) {
		static char buf[65536];
		memset(buf, 'x', sizeof buf);
		for (;;)
			if (write(1, buf, sizeof buf) < 0)
				return 1;
	} else if (!strcmp(mode, "ignoreterm")) {
		signal(SIGTERM, SIG_IGN);
		for (;;)
			pause();
	} else if (!strcmp(mode, "grandchild")) {
		pid_t pid = fork();
		if (pid == 0) {
			FILE *f = fopen(argv[2], "w");
			if (f) {
				fprintf(f, "%d\n", (int)getpid());
				fclose(f);
			}
			for (;;)
				pause();
		}
		/* wait until the child has written its pid */
		for (int i = 0; i < 500; i++) {
			if (access(argv[2], F_OK) == 0)
				break;
			usleep(10000);
		}
		printf("parent done\n");
	} else if (!strcmp(mode, "detach") && argc > 3) {
		pid_t pid = fork();
		if (pid == 0) {
			setsid();
			FILE *f = fopen(argv[2], "w");
			if (f) {
				fprintf(f, "%d\n", (int)getpid());
				fclose(f);
			}
			sleep(15);
			_exit(0);
		}
		for (int i = 0; i < 500; i++) {
			if (access(argv[2], F_OK) == 0)
				break;
			usleep(10000);
		}
		printf("parent done\n");
		fflush(stdout);
		if (!strcmp(argv[3], "wait"))
			for (;;)
				pause();
	} else if (!strcmp(mode, "bytes") && argc > 2) {
		static char buf[65536];
		memset(buf, 'x', sizeof buf);
		long long left = atoll(argv[2]);
		while (left > 0) {
			ssize_t n = write(1, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
			if (n <= 0)
				return 1;
			left -= n;
		}
	} else if (!strcmp(mode, "hog") && argc > 2) {
		size_t n = (size_t)atol(argv[2]) << 20;
		char *p = malloc(n);
		if (!p)
			return 4;
		for (size_t i = 0; i < n; i += 4096)
			p[i] = 1;
		echo();
	} else if (!strcmp(mode, "bomb")) {
		const char *q = getenv("QUERY_STRING");
		if (q && !strcmp(q, "bomb")) {
			printf("bomb\n");
			fflush(stdout);
			for (;;)
				if (fork() < 0)
					usleep(2000);
		}
		if (q && !strcmp(q, "sleep"))
			usleep(200000);
		echo();
	} else {
		fprintf(stderr, "fn: unknown mode %s\n", mode);
		return 2;
	}
	return 0;
}
