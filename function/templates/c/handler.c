/*
 * A Pulse function in C, run in fork mode: the watchdog starts this program
 * once per request, with the request body on stdin; what it writes to stdout
 * is the response body. Exit status 0 answers 200; any other status answers
 * 500 with the end of stderr. The request's method, path, query and headers
 * are in CGI variables: REQUEST_METHOD, PATH_INFO, QUERY_STRING and
 * HTTP_<HEADER> (see the watchdog's README). pulse build links it statically
 * (gcc -static): the image has no C library.
 *
 * It answers "Hello, <body>", or "Hello, world" for an empty body.
 */
#include <stdio.h>

int main(void) {
	char buf[65536];
	size_t n, total = 0;

	fputs("Hello, ", stdout);
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
		fwrite(buf, 1, n, stdout);
		total += n;
	}
	if (ferror(stdin)) {
		perror("read stdin");
		return 1;
	}
	if (total == 0) {
		fputs("world", stdout);
	}
	fputc('\n', stdout);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("write stdout");
		return 1;
	}
	return 0;
}
