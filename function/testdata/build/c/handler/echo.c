/* A test fixture: a fork-mode function that echoes its request body. */
#include <stdio.h>

#include "echo.h"

int main(void) {
	char buf[ECHO_BUFFER];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
		if (fwrite(buf, 1, n, stdout) != n) {
			return 1;
		}
	}
	return ferror(stdin) ? 1 : 0;
}
