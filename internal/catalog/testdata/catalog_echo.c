/* catalog_echo echoes its standard input: the fork-mode function of the
 * catalog's real-swarm test (swarm_test.go), built with gcc -static. */
#include <unistd.h>

int main(void) {
	char buf[4096];
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0)
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(1, buf + off, (size_t)(n - off));
			if (w < 0)
				return 1;
			off += w;
		}
	return n < 0 ? 1 : 0;
}
