/* pf_gen FILE SIZE [--key=K] [--append]
 *
 * Writes SIZE bytes of offset-encoded data (see common.h) to FILE: every
 * 8-byte word holds its own file offset, big-endian, XORed with K. With
 * --append the data continues the encoding after the current end of FILE. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	unsigned key = 0;
	int append = 0;
	const char *path = NULL, *size_text = NULL, *v;

	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "key")))
			key = (unsigned)parse_size(v);
		else if (strcmp(argv[i], "--append") == 0)
			append = 1;
		else if (!path)
			path = argv[i];
		else if (!size_text)
			size_text = argv[i];
		else
			die("usage: pf_gen FILE SIZE [--key=K] [--append]");
	}
	if (!path || !size_text)
		die("usage: pf_gen FILE SIZE [--key=K] [--append]");

	int fd = open(path, O_WRONLY | O_CREAT | (append ? 0 : O_TRUNC), 0644);
	if (fd < 0)
		die("open %s: %m", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat: %m");
	if (write_offsets(fd, append ? st.st_size : 0, parse_size(size_text), key) < 0)
		die("write %s: %m", path);
	if (close(fd) < 0)
		die("close: %m");
	return 0;
}
