/* pf_secure LIBRARY FILE [--bs=N]
 *
 * The library in a secure-mode process (AT_SECURE: set-user-ID or
 * set-group-ID programs), where the dynamic linker refuses LD_PRELOAD paths
 * with a slash: the library is dlopen()ed by its absolute path instead, and
 * FILE is read sequentially through the library's own exported open, read
 * and close (dlsym on its handle), so that its hooks run exactly as they
 * would for a preloaded library. The library is never dlclose()d: its
 * destructor runs at exit, where it would write its statistics.
 *
 * Prints getauxval(AT_SECURE), then what was read (bytes and a hash). */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	const char *lib = NULL, *path = NULL, *v;
	size_t bs = 65536;

	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "bs")))
			bs = (size_t)parse_size(v);
		else if (!lib)
			lib = argv[i];
		else if (!path)
			path = argv[i];
		else
			die("usage: pf_secure LIBRARY FILE [--bs=N]");
	}
	if (!lib || !path || bs == 0)
		die("usage: pf_secure LIBRARY FILE [--bs=N]");

	printf("at_secure=%lu\n", getauxval(AT_SECURE));
	fflush(stdout);

	void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		die("dlopen %s: %s", lib, dlerror());
	int (*lib_open)(const char *, int, ...);
	ssize_t (*lib_read)(int, void *, size_t);
	int (*lib_close)(int);
	/* Through a void * and memcpy: ISO C has no cast from an object pointer
	 * to a function pointer. */
	void *sym;
	if (!(sym = dlsym(handle, "open")))
		die("dlsym open: %s", dlerror());
	memcpy(&lib_open, &sym, sizeof(sym));
	if (!(sym = dlsym(handle, "read")))
		die("dlsym read: %s", dlerror());
	memcpy(&lib_read, &sym, sizeof(sym));
	if (!(sym = dlsym(handle, "close")))
		die("dlsym close: %s", dlerror());
	memcpy(&lib_close, &sym, sizeof(sym));

	int fd = lib_open(path, O_RDONLY);
	if (fd < 0)
		die("open %s: %m", path);
	unsigned char *buf = xmalloc(bs);
	uint64_t hash = FNV_INIT;
	long long total = 0;
	long reads = 0;
	for (;;) {
		ssize_t n = lib_read(fd, buf, bs);
		if (n < 0)
			die("read %s: %m", path);
		if (n == 0)
			break;
		hash = fnv1a(hash, buf, (size_t)n);
		total += n;
		reads++;
	}
	if (lib_close(fd) != 0)
		die("close: %m");
	printf("total=%lld reads=%ld hash=%016llx\n", total, reads, (unsigned long long)hash);
	return 0;
}
