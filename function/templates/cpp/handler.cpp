// A Pulse function in C++, run in fork mode: the watchdog starts this program
// once per request, with the request body on stdin; what it writes to stdout
// is the response body. Exit status 0 answers 200; any other status answers
// 500 with the end of stderr. pulse build links it statically (g++ -static):
// the image has no C or C++ library.
//
// It echoes the request back as one line of JSON:
//   {"method":"POST","path":"/x","query":{"a":"1"},"headers":{"X-Test":"v"},"body":"..."}
// from the CGI variables the watchdog sets (see its README): REQUEST_METHOD,
// PATH_INFO, QUERY_STRING (URL-decoded here; a repeated parameter keeps its
// last value), HTTP_<NAME> for each header (turned back into X-Name; the
// Content-Type header arrives as CONTENT_TYPE) and the body from stdin.
// Strings are JSON-escaped; bytes that are not UTF-8 become U+FFFD.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

extern char **environ;

namespace {

int hexValue(char c) {
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

// urlDecode decodes %XX escapes and '+' (a space, in a query string); a
// malformed escape stays as written.
std::string urlDecode(const std::string &s) {
	std::string out;
	for (std::size_t i = 0; i < s.size(); ++i) {
		if (s[i] == '+') {
			out += ' ';
			continue;
		}
		if (s[i] == '%' && i + 2 < s.size()) {
			int hi = hexValue(s[i + 1]), lo = hexValue(s[i + 2]);
			if (hi >= 0 && lo >= 0) {
				out += static_cast<char>(hi * 16 + lo);
				i += 2;
				continue;
			}
		}
		out += s[i];
	}
	return out;
}

std::map<std::string, std::string> parseQuery(const std::string &q) {
	std::map<std::string, std::string> params;
	std::size_t start = 0;
	while (start <= q.size()) {
		std::size_t end = q.find('&', start);
		if (end == std::string::npos) end = q.size();
		std::string pair = q.substr(start, end - start);
		if (!pair.empty()) {
			std::size_t eq = pair.find('=');
			if (eq == std::string::npos) {
				params[urlDecode(pair)] = "";
			} else {
				params[urlDecode(pair.substr(0, eq))] = urlDecode(pair.substr(eq + 1));
			}
		}
		start = end + 1;
	}
	return params;
}

// headerName turns the NAME of HTTP_NAME back into a header name: X_TEST
// becomes X-Test.
std::string headerName(const std::string &var) {
	std::string out;
	bool upper = true;
	for (char c : var) {
		if (c == '_') {
			out += '-';
			upper = true;
			continue;
		}
		if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
		if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
		out += c;
		upper = false;
	}
	return out;
}

// utf8Length returns the length of the valid UTF-8 sequence at s[i], or 0.
std::size_t utf8Length(const std::string &s, std::size_t i) {
	unsigned char c = static_cast<unsigned char>(s[i]);
	std::size_t n;
	unsigned long cp;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (i + n > s.size()) return 0;
	for (std::size_t k = 1; k < n; ++k) {
		unsigned char d = static_cast<unsigned char>(s[i + k]);
		if ((d & 0xc0) != 0x80) return 0;
		cp = cp << 6 | (d & 0x3f);
	}
	if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
	if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
	return n;
}

void appendString(std::string &out, const std::string &s) {
	static const char hex[] = "0123456789abcdef";
	out += '"';
	for (std::size_t i = 0; i < s.size();) {
		unsigned char c = static_cast<unsigned char>(s[i]);
		if (c >= 0x80) {
			std::size_t n = utf8Length(s, i);
			if (n == 0) {
				out += "\\ufffd";
				++i;
			} else {
				out.append(s, i, n);
				i += n;
			}
			continue;
		}
		switch (c) {
		case '"': out += "\\\""; break;
		case '\\': out += "\\\\"; break;
		case '\n': out += "\\n"; break;
		case '\r': out += "\\r"; break;
		case '\t': out += "\\t"; break;
		default:
			if (c < 0x20) {
				out += "\\u00";
				out += hex[c >> 4];
				out += hex[c & 0xf];
			} else {
				out += static_cast<char>(c);
			}
		}
		++i;
	}
	out += '"';
}

void appendObject(std::string &out, const std::map<std::string, std::string> &m) {
	out += '{';
	bool first = true;
	for (const auto &kv : m) {
		if (!first) out += ',';
		first = false;
		appendString(out, kv.first);
		out += ':';
		appendString(out, kv.second);
	}
	out += '}';
}

std::string getenvString(const char *name) {
	const char *v = std::getenv(name);
	return v ? v : "";
}

} // namespace

int main() {
	std::string body;
	char buf[65536];
	std::size_t n;
	while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) body.append(buf, n);
	if (std::ferror(stdin)) {
		std::perror("read stdin");
		return 1;
	}

	std::map<std::string, std::string> headers;
	for (char **e = environ; *e; ++e) {
		const char *var = *e, *eq = std::strchr(var, '=');
		if (std::strncmp(var, "HTTP_", 5) != 0 || !eq || eq == var + 5) continue;
		headers[headerName(std::string(var + 5, eq))] = eq + 1;
	}
	std::string contentType = getenvString("CONTENT_TYPE");
	if (!contentType.empty()) headers["Content-Type"] = contentType;

	std::string out = "{\"method\":";
	appendString(out, getenvString("REQUEST_METHOD"));
	out += ",\"path\":";
	appendString(out, getenvString("PATH_INFO"));
	out += ",\"query\":";
	appendObject(out, parseQuery(getenvString("QUERY_STRING")));
	out += ",\"headers\":";
	appendObject(out, headers);
	out += ",\"body\":";
	appendString(out, body);
	out += "}\n";

	if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
		std::perror("write stdout");
		return 1;
	}
	return 0;
}
