#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libc.h"

struct pf_libc pf_libc;

static pthread_once_t bind_once = PTHREAD_ONCE_INIT;
/* Set on the thread running dlsym: a hook re-entered from inside dlsym
 * (dlerror buffers, an allocator that opens /proc during its own init) must
 * not wait on bind_once, which that same thread is running. */
static __thread int binding __attribute__((tls_model("initial-exec")));

/* glibc's own exported aliases: reached without dlsym, never interposed. */
extern int __open64(const char *path, int flags, ...);
extern ssize_t __read(int fd, void *buf, size_t count);
extern ssize_t __pread64(int fd, void *buf, size_t count, off64_t offset);
extern off64_t __lseek(int fd, off64_t offset, int whence);
extern int __close(int fd);

/* The address range of this library's own loaded segments. dladdr() on
 * every bound symbol would tell the same, but it scans the symbol table of
 * the object it lands in (libc's, thousands of entries), for every symbol,
 * at every process's first hook. */
struct own_range {
	uintptr_t lo, hi;
};

static int find_own_range(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct own_range *own = arg;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t start = info->dlpi_addr + ph->p_vaddr;
		if (start < lo)
			lo = start;
		if (start + ph->p_memsz > hi)
			hi = start + ph->p_memsz;
	}
	uintptr_t self = (uintptr_t)&find_own_range;
	if (self < lo || self >= hi)
		return 0;
	own->lo = lo;
	own->hi = hi;
	return 1;
}

static void *bind_symbol(const char *name, const struct own_range *own)
{
	void *fn = dlsym(RTLD_NEXT, name);
	if (fn && (uintptr_t)fn >= own->lo && (uintptr_t)fn < own->hi) {
		/* Every call would recurse into the hook: nothing can work. */
		static const char msg[] = "libprefetch: fatal: dlsym(RTLD_NEXT) returned the library's own ";
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)!write(STDERR_FILENO, name, strlen(name));
		(void)!write(STDERR_FILENO, "\n", 1);
		abort();
	}
	return fn;
}

static void bind_all(void)
{
	struct own_range own = { 0, 0 };
	binding = 1;
	dl_iterate_phdr(find_own_range, &own);
#define BIND(name) (*(void **)&pf_libc.name = bind_symbol(#name, &own))
	BIND(open);
	BIND(open64);
	BIND(openat);
	BIND(openat64);
	BIND(__open_2);
	BIND(__open64_2);
	BIND(__openat_2);
	BIND(__openat64_2);
	BIND(creat);
	BIND(creat64);
	BIND(read);
	BIND(__read_chk);
	BIND(pread);
	BIND(pread64);
	BIND(__pread_chk);
	BIND(__pread64_chk);
	BIND(readv);
	BIND(preadv);
	BIND(preadv64);
	BIND(preadv2);
	BIND(lseek);
	BIND(lseek64);
	BIND(close);
	BIND(close_range);
	BIND(closefrom);
	BIND(dup);
	BIND(dup2);
	BIND(dup3);
	BIND(fcntl);
	BIND(fcntl64);
	BIND(posix_fadvise);
	BIND(posix_fadvise64);
	BIND(fopen);
	BIND(fopen64);
	BIND(freopen);
	BIND(freopen64);
	BIND(fclose);
	BIND(fread);
	BIND(fread_unlocked);
	BIND(__fread_chk);
	BIND(__fread_unlocked_chk);
	BIND(mmap);
	BIND(mmap64);
	BIND(munmap);
	BIND(mremap);
	BIND(madvise);
	BIND(posix_madvise);
	BIND(readdir);
	BIND(readdir64);
	BIND(closedir);
#undef BIND
	binding = 0;
}

int pf_libc_bind(void)
{
	if (__builtin_expect(binding, 0))
		return -1;
	pthread_once(&bind_once, bind_all);
	return 0;
}

int pf_boot_open(const char *path, int flags, mode_t mode)
{
	return __open64(path, flags, mode);
}

ssize_t pf_boot_read(int fd, void *buf, size_t count)
{
	return __read(fd, buf, count);
}

ssize_t pf_boot_pread(int fd, void *buf, size_t count, off64_t offset)
{
	return __pread64(fd, buf, count, offset);
}

off64_t pf_boot_lseek(int fd, off64_t offset, int whence)
{
	return __lseek(fd, offset, whence);
}

int pf_boot_close(int fd)
{
	return __close(fd);
}

/* glibc's own aliases of these (__mmap, __munmap, __madvise) are
 * GLIBC_PRIVATE and cannot be linked to: while dlsym runs on this thread
 * (it allocates, and allocators map memory), the system calls themselves
 * are the only way to the kernel that no hook intercepts. */
void *pf_boot_mmap(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int pf_boot_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

void *pf_boot_mremap(void *old_addr, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	return (void *)syscall(SYS_mremap, old_addr, old_len, new_len, flags, new_addr);
}

int pf_boot_madvise(void *addr, size_t len, int advice)
{
	return (int)syscall(SYS_madvise, addr, len, advice);
}

/* cachestat(2) has no C library wrapper (glibc 2.36 has none), and Debian
 * 12's kernel headers predate it: its number is 451 on every architecture,
 * its structures are these. */
#define PF_NR_CACHESTAT 451

struct pf_cachestat_range {
	uint64_t off, len;
};

struct pf_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

int pf_cachestat(int fd, uint64_t off, uint64_t len, uint64_t *pages)
{
	struct pf_cachestat_range range = { off, len };
	struct pf_cachestat cs;
	if (syscall(PF_NR_CACHESTAT, fd, &range, &cs, 0) != 0)
		return -1;
	*pages = cs.nr_cache;
	return 0;
}

/* The descriptor is transient, in the calling thread (a program thread or a
 * worker): opened and closed at once, through the real functions. */
ssize_t pf_read_small(const char *path, char *buf, size_t size)
{
	int fd = pf_libc.open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	ssize_t r;
	while (len + 1 < size && (r = pf_libc.read(fd, buf + len, size - 1 - len)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			len = 0;
			break;
		}
		len += (size_t)r;
	}
	pf_libc.close(fd);
	buf[len] = '\0';
	return len ? (ssize_t)len : -1;
}

#ifdef __SANITIZE_THREAD__
/* ThreadSanitizer must see the library's memory come and go: the real calls
 * are out of its sight, and a new mapping at an old one's address would
 * inherit the old memory's accesses (false races between streams). */
void *__interceptor_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __interceptor_munmap(void *addr, size_t len);
#define pages_mmap __interceptor_mmap
#define pages_munmap __interceptor_munmap
#else
#define pages_mmap pf_libc.mmap
#define pages_munmap pf_libc.munmap
#endif

void *pf_pages_alloc(size_t size)
{
	if (!pf_libc.mmap || size == 0)
		return NULL;
	void *p = pages_mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void pf_pages_free(void *p, size_t size)
{
	if (p)
		pages_munmap(p, size);
}
