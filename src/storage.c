#include "config.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "storage.h"

#define PF_STORAGE_DEVS 32u

/* What the mount table says of a device's filesystem. */
enum mount_class {
	MOUNT_UNREAD = 0,
	MOUNT_OTHER,
	MOUNT_FUSE,
	MOUNT_ONE_STREAM, /* a FUSE client of one_stream_clients */
};

/* dev + 1 (0: free slot), then what is known of it; each written once
 * (or with the same value), read lock-free. A device number freed by an
 * unmount and given to another mount keeps what was learned of the first. */
struct known_dev {
	unsigned long long dev1;
	int mode;  /* enum pf_storage_mode + 1; 0 until learned */
	int kind;  /* enum pf_fs_kind */
	int mount; /* enum mount_class */
	uint64_t mnt_id; /* the mount's unique ID; 0: not asked */
};
#define NO_MNT_ID UINT64_MAX /* the kernel names no mount uniquely (before 6.8) */
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x4000u /* Linux 6.8; glibc 2.36 does not name it */
#endif
static struct known_dev known[PF_STORAGE_DEVS];

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

static struct known_dev *device(dev_t dev, bool claim)
{
	unsigned long long dev1 = (unsigned long long)dev + 1;
	for (unsigned i = 0; i < PF_STORAGE_DEVS; i++) {
		unsigned long long d = __atomic_load_n(&known[i].dev1, __ATOMIC_ACQUIRE);
		if (d == dev1)
			return &known[i];
		if (d == 0 && claim &&
		    __atomic_compare_exchange_n(&known[i].dev1, &d, dev1, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return &known[i];
		if (d == 0 && !claim)
			return NULL;
		if (d == dev1) /* claimed by another thread meanwhile */
			return &known[i];
	}
	return NULL;
}

void pf_storage_learn(dev_t dev, enum pf_storage_mode mode)
{
	struct known_dev *k = device(dev, true);
	if (k)
		__atomic_store_n(&k->mode, (int)mode + 1, __ATOMIC_RELEASE);
}

/* "fuse", "fuseblk", "fuse.sshfs"...; not "fusectl". */
static bool fuse_type(const char *type)
{
	return strcmp(type, "fuse") == 0 || strcmp(type, "fuseblk") == 0 ||
	       strncmp(type, "fuse.", 5) == 0;
}

/* The mount table read once per device k (NULL: the table of devices is
 * full, read each time). */
static enum mount_class mount_class(struct known_dev *k, dev_t dev)
{
	int class = k ? __atomic_load_n(&k->mount, __ATOMIC_ACQUIRE) : MOUNT_UNREAD;
	if (class != MOUNT_UNREAD)
		return (enum mount_class)class;
	char type[64];
	class = !pf_mount_type(dev, type) || !fuse_type(type) ? MOUNT_OTHER
		: one_stream_client(type)		      ? MOUNT_ONE_STREAM
							      : MOUNT_FUSE;
	if (class == MOUNT_ONE_STREAM)
		PF_LOG(PF_LOG_INFO, "%s reads ahead of each handle itself", type);
	if (k)
		__atomic_store_n(&k->mount, class, __ATOMIC_RELEASE);
	return (enum mount_class)class;
}

enum pf_storage_mode pf_storage_mode(dev_t dev)
{
	struct known_dev *k = device(dev, true);
	int learned = k ? __atomic_load_n(&k->mode, __ATOMIC_ACQUIRE) : 0;
	if (learned)
		return (enum pf_storage_mode)(learned - 1);
	enum pf_storage_mode mode = mount_class(k, dev) == MOUNT_ONE_STREAM
					    ? PF_STORAGE_CLIENT_READS_AHEAD
					    : PF_STORAGE_UNKNOWN;
	pf_storage_learn(dev, mode);
	return mode;
}

static enum pf_fs_kind ask_kind(struct known_dev *k, int fd, dev_t dev)
{
	if (mount_class(k, dev) != MOUNT_OTHER)
		return PF_FS_FUSE;
	struct statfs fs;
	if (fstatfs(fd, &fs) != 0)
		return PF_FS_UNASKED;
	if (pf_pseudo_filesystem((long)fs.f_type))
		return PF_FS_PSEUDO;
	return fs.f_type == FUSE_SUPER_MAGIC ? PF_FS_FUSE : PF_FS_OTHER;
}

enum pf_fs_kind pf_fs_kind(int fd, dev_t dev)
{
	struct known_dev *k = device(dev, true);
	int kind = k ? __atomic_load_n(&k->kind, __ATOMIC_ACQUIRE) : PF_FS_UNASKED;
	if (kind != PF_FS_UNASKED)
		return (enum pf_fs_kind)kind;
	kind = ask_kind(k, fd, dev);
	if (k)
		__atomic_store_n(&k->kind, kind, __ATOMIC_RELEASE);
	return (enum pf_fs_kind)kind;
}

bool pf_fs_holds_data(int fd, dev_t dev)
{
	enum pf_fs_kind kind = pf_fs_kind(fd, dev);
	return kind != PF_FS_UNASKED && kind != PF_FS_PSEUDO;
}

uint64_t pf_storage_mount_id(int fd, dev_t dev)
{
	struct known_dev *k = device(dev, true);
	uint64_t id = k ? __atomic_load_n(&k->mnt_id, __ATOMIC_ACQUIRE) : 0;
	if (!id) {
		struct statx sx;
		id = statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID_UNIQUE, &sx) == 0 &&
				     (sx.stx_mask & STATX_MNT_ID_UNIQUE) && sx.stx_mnt_id
			     ? sx.stx_mnt_id
			     : NO_MNT_ID;
		if (k)
			__atomic_store_n(&k->mnt_id, id, __ATOMIC_RELEASE);
	}
	return id == NO_MNT_ID ? 0 : id;
}
