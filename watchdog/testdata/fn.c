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
	} else {
		fprintf(stderr, "fn: unknown mode %s\n", mode);
		return 2;
	}
	return 0;
}
