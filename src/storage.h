/* What a filesystem rewards: reads ahead in parallel, or in order, one at a
 * time (object-store clients that serve each handle as one sequential
 * stream). Learned per filesystem, so that only a process's first stream
 * on it measures. */
#ifndef PF_STORAGE_H
#define PF_STORAGE_H

#include <stdbool.h>
#include <sys/types.h>

enum pf_storage_mode {
	PF_STORAGE_UNKNOWN = 0, /* measure it */
	PF_STORAGE_PARALLEL,
	PF_STORAGE_ORDERED,
	/* A client known to read ahead of each handle itself, in order
	 * (rclone's --buffer-size): the library steps aside. */
	PF_STORAGE_CLIENT_READS_AHEAD,
};

/* Whether reads out of order cost the storage a new request. */
#define PF_STORAGE_ONE_STREAM(mode) \
	((mode) == PF_STORAGE_ORDERED || (mode) == PF_STORAGE_CLIENT_READS_AHEAD)

/* What is known of the filesystem of fd (device dev): learned, or the
 * client's own kind where it is one that serves a handle as one stream.
 * Called by the reading thread (it reads /proc/self/mountinfo once per
 * filesystem, through a descriptor it closes before returning). */
enum pf_storage_mode pf_storage_mode(dev_t dev);

/* Remembers what a stream measured on dev. Lock-free: safe across fork. */
void pf_storage_learn(dev_t dev, enum pf_storage_mode mode);

/* The unique ID of the mount of fd (device dev), which the kernel never
 * gives another mount (a device number is reused by the next), asked once
 * per device; 0 before Linux 6.8. AT_STATX_DONT_SYNC: a FUSE client would
 * otherwise ask its server. */
uint64_t pf_storage_mount_id(int fd, dev_t dev);

/* Filesystems whose files are not data on storage (proc, sysfs, cgroup,
 * hugetlbfs, ...): never prefetched. */
bool pf_pseudo_filesystem(long type);

/* The kind of filesystem a file is on, as far as prefetching goes. */
enum pf_fs_kind {
	PF_FS_UNASKED = 0, /* or fstatfs() failed: not a candidate */
	PF_FS_PSEUDO,      /* not data on storage (proc, sysfs, cgroup, hugetlbfs...) */
	PF_FS_FUSE,        /* its page cache keeps a short read's zero-filled pages */
	PF_FS_OTHER,
};

/* The kind of the filesystem of fd (device dev), asked once per device:
 * from the mount table where it names a FUSE client, whose fstatfs() is a
 * round trip to its server (sshfs at 10 ms one way: 20 ms), else by
 * fstatfs(). */
enum pf_fs_kind pf_fs_kind(int fd, dev_t dev);

/* Whether files of fd's filesystem are data on storage, worth reading
 * ahead: known (not UNASKED) and not PSEUDO. */
bool pf_fs_holds_data(int fd, dev_t dev);

/* The filesystem type of the mount of dev as mount(8) shows it ("ext4",
 * "fuse.sshfs"), from /proc/self/mountinfo; false when not found. */
bool pf_mount_type(dev_t dev, char type[64]);

#endif
