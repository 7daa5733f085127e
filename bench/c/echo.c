/*
 * echo.c: the watchdog benchmark's static C function for fork mode. It
 * copies stdin to stdout with read(2) and write(2) and exits 0, or exits 1
 * on an I/O error. Build: gcc -static -O2 -s -o cecho echo.c
 */
#include <errno.h>
#include <unistd.h>

int main(void)
{
	static char buf[65536];
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(1, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return 1;
			}
			off += w;
		}
	}
}
