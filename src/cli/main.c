/*
 * main.c - igserve's command line: dispatch to predict, attribute, serve.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_usage(FILE *f)
{
	fprintf(f,
	        "usage: igserve <command> [options]\n"
	        "\n"
	        "commands:\n"
	        "  predict    top-k classes of images            (igserve predict --help)\n"
	        "  attribute  Integrated Gradients of an image   (igserve attribute --help)\n"
	        "  serve      run the HTTP service               (igserve serve --help)\n"
	        "  version    print the version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "predict"))
		return cli_predict(argc - 1, argv + 1);
	if (!strcmp(cmd, "attribute"))
		return cli_attribute(argc - 1, argv + 1);
	if (!strcmp(cmd, "serve"))
		return cli_serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("igserve %s\n", IGSERVE_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		print_usage(stdout);
		return 0;
	}
	fprintf(stderr, "igserve: unknown command '%s'\n\n", cmd);
	print_usage(stderr);
	return 2;
}
