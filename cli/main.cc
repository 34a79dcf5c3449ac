// wooly-cli: Wooly's command-line tool. See `wooly-cli help`.
#include <iostream>
#include <string>
#include <vector>

#include "wooly/cli/cli.h"
#include "wooly/cli/layout.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return wooly::cli::Main(args, wooly::cli::SelfExePath(), std::cout, std::cerr);
}
