/* The fixture's buffer size: a header, so the source hash must follow it. */
#define ECHO_BUFFER 65536
