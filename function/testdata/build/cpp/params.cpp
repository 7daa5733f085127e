// A test fixture: a fork-mode C++ function that echoes the query parameters,
// headers and body of its request.
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>

extern char **environ;

int main() {
	std::map<std::string, std::string> headers;
	for (char **e = environ; *e != nullptr; ++e) {
		std::string kv(*e);
		if (kv.rfind("HTTP_", 0) == 0) {
			std::size_t eq = kv.find('=');
			headers[kv.substr(5, eq - 5)] = kv.substr(eq + 1);
		}
	}
	const char *q = std::getenv("QUERY_STRING");
	std::istringstream query(q != nullptr ? q : "");
	std::string param;
	while (std::getline(query, param, '&')) {
		if (!param.empty()) {
			std::cout << "query " << param << "\n";
		}
	}
	for (const auto &h : headers) {
		std::cout << "header " << h.first << ": " << h.second << "\n";
	}
	std::cout << "body " << std::string(std::istreambuf_iterator<char>(std::cin), {}) << std::flush;
	return 0;
}
