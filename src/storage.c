#include "config.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "storage.h"

#define PF_STORAGE_DEVS 32u

/* dev + 1 (0: free slot), then the mode; written once each, read lock-free. */
static struct {
	unsigned long long dev1;
	int mode;
} known[PF_STORAGE_DEVS];

/* FUSE clients that serve each open handle as one sequential stream (an
 * HTTP range request): a read out of order there costs a wait and a new
 * request (rclone's --vfs-read-wait, mountpoint-s3's seek window). Through
 * the page cache, the kernel's own readahead blurs what two reads in
 * flight measure (docs/benchmarks-storage.md), so their kind is taken from
 * the mount table. */
static const char *const one_stream_clients[] = {
	"fuse.rclone", "fuse.mountpoint-s3", "fuse.gcsfuse", "fuse.goofys",
};

static bool one_stream_client(const char *fstype)
{
	for (size_t i = 0; i < sizeof(one_stream_clients) / sizeof(one_stream_clients[0]); i++)
		if (strcmp(fstype, one_stream_clients[i]) == 0)
			return true;
	return false;
}

bool pf_pseudo_filesystem(long type)
{
	switch (type) {
	case PROC_SUPER_MAGIC:
	case SYSFS_MAGIC:
	case DEBUGFS_MAGIC:
	case TRACEFS_MAGIC:
	case SECURITYFS_MAGIC:
	case CGROUP_SUPER_MAGIC:
	case CGROUP2_SUPER_MAGIC:
	case DEVPTS_SUPER_MAGIC:
	case BPF_FS_MAGIC:
	case PSTOREFS_MAGIC:
	case EFIVARFS_MAGIC:
	case SELINUX_MAGIC:
	case SMACK_MAGIC:
	case BINFMTFS_MAGIC:
	case HUGETLBFS_MAGIC:   /* its pages are memory already */
	case 0x65735543: /* fusectl */
	case 0x19800202: /* mqueue */
	case 0x62656570: /* configfs */
	case 0x6e736673: /* nsfs */
	case 0x50495045: /* pipefs */
	case 0x534f434b: /* sockfs */
		return true;
	default:
		return false;
	}
}

/* Copies the type of a mountinfo line of dev ("ID PARENT MAJ:MIN root
 * mountpoint options ... - TYPE source ...") into type. */
static bool line_type(const char *line, const char *want, char *type)
{
	const char *at = strstr(line, want), *sep = strstr(line, " - ");
	return at && sep && at < sep && sscanf(sep + 3, "%63s", type) == 1;
}

/* The filesystem type (64 bytes) of the mount of dev, from
 * /proc/self/mountinfo, read in pieces on the stack (a container's table
 * can be long; no malloc: the mmap hook asks too, maybe in an allocator). */
bool pf_mount_type(dev_t dev, char type[64])
{
	enum { PIECE = 4096 };
	char want[48];
	snprintf(want, sizeof(want), " %u:%u ", major(dev), minor(dev));
	char buf[PIECE + 1];
	int fd = pf_libc.open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	bool found = false;
	size_t len = 0;
	ssize_t r;
	while (fd >= 0 && !found && (r = pf_libc.read(fd, buf + len, PIECE - len)) > 0) {
		len += (size_t)r;
		buf[len] = '\0';
		char *line = buf, *end;
		while (!found && (end = strchr(line, '\n'))) {
			*end = '\0';
			found = line_type(line, want, type);
			line = end + 1;
		}
		len -= (size_t)(line - buf);
		if (len == PIECE)
			len = 0; /* a line longer than a piece: not a mount of ours */
		memmove(buf, line, len);
	}
	if (fd >= 0)
		pf_libc.close(fd);
	return found;
}

static int *slot_of(dev_t dev, bool claim)
{
	unsigned long long dev1 = (unsigned long long)dev + 1;
	for (unsigned i = 0; i < PF_STORAGE_DEVS; i++) {
		unsigned long long d = __atomic_load_n(&known[i].dev1, __ATOMIC_ACQUIRE);
		if (d == dev1)
			return &known[i].mode;
		if (d == 0 && claim &&
		    __atomic_compare_exchange_n(&known[i].dev1, &d, dev1, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return &known[i].mode;
		if (d == 0 && !claim)
			return NULL;
	}
	return NULL;
}

void pf_storage_learn(dev_t dev, enum pf_storage_mode mode)
{
	int *m = slot_of(dev, true);
	if (m)
		__atomic_store_n(m, (int)mode, __ATOMIC_RELEASE);
}

enum pf_storage_mode pf_storage_mode(dev_t dev)
{
	int *m = slot_of(dev, false);
	if (m)
		return (enum pf_storage_mode)__atomic_load_n(m, __ATOMIC_ACQUIRE);
	char type[64];
	enum pf_storage_mode mode = PF_STORAGE_UNKNOWN;
	if (pf_mount_type(dev, type) && one_stream_client(type)) {
		PF_LOG(PF_LOG_INFO, "%s reads ahead of each handle itself: stepping aside", type);
		mode = PF_STORAGE_CLIENT_READS_AHEAD;
	}
	pf_storage_learn(dev, mode);
	return mode;
}

bool pf_fuse_file(int fd)
{
	struct statfs fs;
	return fstatfs(fd, &fs) == 0 && fs.f_type == FUSE_SUPER_MAGIC;
}
