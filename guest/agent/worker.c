/*
 * A VFIO worker: one process that owns a container and a group, allocates
 * memory regions, pre-registers them (VFIO_IOMMU_SPAPR_REGISTER_MEMORY),
 * creates and removes DMA windows and maps DMA. It is the "userspace tool"
 * whose exit, fd closes and forked children the host checks pin release
 * against. Requests arrive as {"op", "args"} lines from the agent.
 */
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/vfio.h>

#define MAX_REGIONS 64
#define MAX_WINDOWS 8

struct region {
	int id;
	void *addr;
	uint64_t size;
	int hugetlb;
	int registered;
};

static int container_fd = -1, group_fd = -1, group_no = -1;
static struct region regions[MAX_REGIONS];
static int next_region = 1;
static uint64_t windows[MAX_WINDOWS];
static uint64_t window_sizes[MAX_WINDOWS];
static int window_shift[MAX_WINDOWS];
static pid_t holders[16];
static int nholders;

int worker_group_fd(void)
{
	return group_fd;
}

static int need_container(struct reply *r)
{
	if (container_fd < 0)
		return fail(r, "EBADF", "no container open in this worker (run 'open' first, or it was closed)");
	return 0;
}

static struct region *get_region(const struct jval *args, struct reply *r)
{
	uint64_t id;
	int rc = json_u64(args, "region", &id);
	if (rc) {
		bad_arg(r, "region", rc, "a region id from alloc");
		return NULL;
	}
	for (int i = 0; i < MAX_REGIONS; i++)
		if (regions[i].id == (int)id && regions[i].addr)
			return &regions[i];
	fail(r, "ENOENT", "no region %llu in this worker", (unsigned long long)id);
	return NULL;
}

static void info_json(struct sbuf *s)
{
	struct vfio_iommu_spapr_tce_info info = { .argsz = sizeof(info) };
	if (ioctl(container_fd, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info)) {
		sb_fmt(s, "{\"error\":\"%s\"}", errno_name(errno));
		return;
	}
	sb_fmt(s, "{\"flags\":%u,\"ddwSupported\":%s,\"dma32WindowStart\":\"0x%x\",\"dma32WindowSize\":\"0x%x\","
		  "\"ddw\":{\"pageSizes\":\"0x%llx\",\"maxDynamicWindows\":%u,\"levels\":%u}}",
	       info.flags, info.flags & VFIO_IOMMU_SPAPR_INFO_DDW ? "true" : "false", info.dma32_window_start, info.dma32_window_size,
	       (unsigned long long)info.ddw.pgsizes, info.ddw.max_dynamic_windows_supported, info.ddw.levels);
}

static enum outcome op_open(const struct jval *args, struct reply *r)
{
	uint64_t group;
	int rc = json_u64(args, "group", &group);
	if (rc || group > 100000)
		return bad_arg(r, "group", rc ? rc : -2, "an IOMMU group number");
	if (container_fd >= 0 || group_fd >= 0)
		return fail(r, "EEXIST", "this worker already has a container or group open");
	/* "iommu": "v1" opens a VFIO_SPAPR_TCE_IOMMU container (no DDW, no pre-registration): a seeded fault's way in. */
	const char *type_name = "v2";
	rc = json_str(args, "iommu", &type_name);
	if (rc == -2 || (strcmp(type_name, "v1") && strcmp(type_name, "v2")))
		return bad_arg(r, "iommu", -2, "\"v1\" or \"v2\"");
	unsigned long iommu_type = strcmp(type_name, "v1") ? VFIO_SPAPR_TCE_v2_IOMMU : VFIO_SPAPR_TCE_IOMMU;
	int c = open("/dev/vfio/vfio", O_RDWR);
	if (c < 0)
		return fail_errno(r, errno, "open /dev/vfio/vfio");
	if (ioctl(c, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
		close(c);
		return fail(r, "EINVAL", "unexpected VFIO API version");
	}
	if (ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) <= 0) {
		close(c);
		return fail(r, "ENODEV", "VFIO_SPAPR_TCE_v2_IOMMU is not supported (is vfio_iommu_spapr_tce loaded?)");
	}
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%llu", (unsigned long long)group);
	int g = open(path, O_RDWR);
	if (g < 0) {
		int e = errno;
		close(c);
		return fail_errno(r, e, "open %s", path);
	}
	struct vfio_group_status st = { .argsz = sizeof(st) };
	if (ioctl(g, VFIO_GROUP_GET_STATUS, &st) || !(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		close(g);
		close(c);
		return fail(r, "EPERM", "group %llu is not viable: every device in it must be bound to vfio-pci or unbound", (unsigned long long)group);
	}
	if (ioctl(g, VFIO_GROUP_SET_CONTAINER, &c)) {
		int e = errno;
		close(g);
		close(c);
		return fail_errno(r, e, "VFIO_GROUP_SET_CONTAINER");
	}
	if (ioctl(c, VFIO_SET_IOMMU, iommu_type)) {
		int e = errno;
		close(g);
		close(c);
		return fail_errno(r, e, "VFIO_SET_IOMMU(%s)", iommu_type == VFIO_SPAPR_TCE_IOMMU ? "VFIO_SPAPR_TCE_IOMMU" : "VFIO_SPAPR_TCE_v2_IOMMU");
	}
	container_fd = c;
	group_fd = g;
	group_no = (int)group;
	sb_fmt(&r->val, "{\"group\":%d,\"pid\":%d,\"info\":", group_no, getpid());
	info_json(&r->val);
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

static enum outcome op_info(const struct jval *args, struct reply *r)
{
	(void)args;
	if (need_container(r))
		return REPLY_ERROR;
	info_json(&r->val);
	return REPLY_OK;
}

/*
 * Enough free, unreserved huge pages in the pool for `size` bytes: the pool grows by what is missing. Reserved pages
 * (mapped by an earlier region, not yet touched) are counted free but are not. HugePages_Rsvd is taken only when it is
 * within the pool: measured on 6.12.107, right after a registered hugetlb region is unregistered and unmapped it reads
 * 2^64 - 8 (a reservation count gone below zero) until the deferred unpin has run.
 */
static void reserve_huge_pages(uint64_t size)
{
	long long hp = kv_value("/proc/meminfo", "Hugepagesize") * 1024;
	long long total = kv_value("/proc/meminfo", "HugePages_Total");
	long long free_pages = kv_value("/proc/meminfo", "HugePages_Free");
	long long rsvd = kv_value("/proc/meminfo", "HugePages_Rsvd");
	if (rsvd < 0 || rsvd > free_pages)
		rsvd = 0;
	long long need = (long long)(size / (uint64_t)hp) - (free_pages - rsvd);
	if (need > 0) {
		char text[32];
		snprintf(text, sizeof(text), "%lld", total + need);
		write_text("/proc/sys/vm/nr_hugepages", text);
	}
}

static enum outcome op_alloc(const struct jval *args, struct reply *r)
{
	uint64_t size;
	bool huge = false;
	int rc = json_u64(args, "size", &size);
	if (rc || size == 0 || size > (64ULL << 30))
		return bad_arg(r, "size", rc ? rc : -2, "bytes, 1 to 64 GiB");
	rc = json_bool(args, "hugetlb", &huge);
	if (rc == -2)
		return bad_arg(r, "hugetlb", rc, "true or false");
	struct region *slot = NULL;
	for (int i = 0; i < MAX_REGIONS; i++)
		if (!regions[i].addr) {
			slot = &regions[i];
			break;
		}
	if (!slot)
		return fail(r, "ENOSPC", "at most %d regions per worker", MAX_REGIONS);
	if (huge) {
		long long hp = kv_value("/proc/meminfo", "Hugepagesize") * 1024;
		if (hp <= 0)
			return fail(r, "EOPNOTSUPP", "the kernel has no huge pages");
		if (size % (uint64_t)hp)
			return fail(r, "EINVAL", "a hugetlb region must be a multiple of the huge page size (%lld bytes)", hp);
	}
	void *p = MAP_FAILED;
	/* Huge pages still pinned by an unregistration whose unpin is deferred come free about a second later: try again. */
	for (int attempt = 0; attempt < 30 && p == MAP_FAILED; attempt++) {
		if (huge)
			reserve_huge_pages(size);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
		if (p == MAP_FAILED && (!huge || errno != ENOMEM))
			break;
		if (p == MAP_FAILED)
			usleep(100000);
	}
	if (p == MAP_FAILED)
		return fail_errno(r, errno, "mmap %llu bytes%s", (unsigned long long)size, huge ? " (hugetlb)" : "");
	memset(slot, 0, sizeof(*slot));
	slot->id = next_region++;
	slot->addr = p;
	slot->size = size;
	slot->hugetlb = huge;
	sb_fmt(&r->val, "{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu,\"hugetlb\":%s}", slot->id, (unsigned long long)(uintptr_t)p,
	       (unsigned long long)size, huge ? "true" : "false");
	return REPLY_OK;
}

static enum outcome op_free(const struct jval *args, struct reply *r)
{
	struct region *g = get_region(args, r);
	if (!g)
		return REPLY_ERROR;
	munmap(g->addr, g->size);
	memset(g, 0, sizeof(*g));
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

/* (region, offset, size) → the ioctl's vaddr/size: offset and size let a test
 * ask for deliberately misaligned ranges. */
static int region_range(const struct jval *args, struct reply *r, struct region **g, uint64_t *vaddr, uint64_t *size)
{
	uint64_t off = 0;
	*g = get_region(args, r);
	if (!*g)
		return -1;
	int rc = json_u64(args, "offset", &off);
	if (rc == -2 || off >= (*g)->size)
		return bad_arg(r, "offset", -2, "bytes inside the region");
	*size = (*g)->size - off;
	rc = json_u64(args, "size", size);
	if (rc == -2 || off + *size > (*g)->size || *size == 0)
		return bad_arg(r, "size", -2, "bytes inside the region");
	*vaddr = (uint64_t)(uintptr_t)(*g)->addr + off;
	return 0;
}

static enum outcome op_register(const struct jval *args, struct reply *r, bool reg)
{
	struct region *g;
	uint64_t vaddr, size;
	if (need_container(r) || region_range(args, r, &g, &vaddr, &size))
		return REPLY_ERROR;
	struct vfio_iommu_spapr_register_memory m = { .argsz = sizeof(m), .vaddr = vaddr, .size = size };
	if (ioctl(container_fd, reg ? VFIO_IOMMU_SPAPR_REGISTER_MEMORY : VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &m))
		return fail_errno(r, errno, "%s vaddr 0x%llx size 0x%llx", reg ? "VFIO_IOMMU_SPAPR_REGISTER_MEMORY" : "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
				  (unsigned long long)vaddr, (unsigned long long)size);
	g->registered = reg;
	sb_fmt(&r->val, "{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu}", g->id, (unsigned long long)vaddr, (unsigned long long)size);
	return REPLY_OK;
}

static enum outcome op_create_window(const struct jval *args, struct reply *r)
{
	uint64_t shift, wsize, levels = 1;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_u64(args, "pageShift", &shift);
	if (rc || shift < 12 || shift > 34)
		return bad_arg(r, "pageShift", rc ? rc : -2, "12 to 34 (4K to 16G pages)");
	rc = json_u64(args, "windowSize", &wsize);
	if (rc || wsize == 0)
		return bad_arg(r, "windowSize", rc ? rc : -2, "bytes, a power of two");
	rc = json_u64(args, "levels", &levels);
	if (rc == -2 || levels < 1 || levels > 5)
		return bad_arg(r, "levels", -2, "1 to 5");
	struct vfio_iommu_spapr_tce_create c = { .argsz = sizeof(c), .page_shift = (uint32_t)shift, .window_size = wsize, .levels = (uint32_t)levels };
	if (ioctl(container_fd, VFIO_IOMMU_SPAPR_TCE_CREATE, &c))
		return fail_errno(r, errno, "VFIO_IOMMU_SPAPR_TCE_CREATE page_shift %llu size 0x%llx levels %llu", (unsigned long long)shift,
				  (unsigned long long)wsize, (unsigned long long)levels);
	for (int i = 0; i < MAX_WINDOWS; i++)
		if (!windows[i]) {
			windows[i] = c.start_addr;
			window_sizes[i] = wsize;
			window_shift[i] = (int)shift;
			break;
		}
	sb_fmt(&r->val, "{\"startAddr\":\"0x%016llx\",\"windowSize\":\"0x%llx\",\"pageShift\":%llu,\"levels\":%llu}",
	       (unsigned long long)c.start_addr, (unsigned long long)wsize, (unsigned long long)shift, (unsigned long long)levels);
	return REPLY_OK;
}

static enum outcome op_remove_window(const struct jval *args, struct reply *r)
{
	uint64_t start;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_u64(args, "startAddr", &start);
	if (rc)
		return bad_arg(r, "startAddr", rc, "the window's start address (\"0x...\")");
	struct vfio_iommu_spapr_tce_remove m = { .argsz = sizeof(m), .start_addr = start };
	if (ioctl(container_fd, VFIO_IOMMU_SPAPR_TCE_REMOVE, &m))
		return fail_errno(r, errno, "VFIO_IOMMU_SPAPR_TCE_REMOVE 0x%llx", (unsigned long long)start);
	for (int i = 0; i < MAX_WINDOWS; i++)
		if (windows[i] == start)
			windows[i] = 0;
	sb_fmt(&r->val, "{\"startAddr\":\"0x%016llx\"}", (unsigned long long)start);
	return REPLY_OK;
}

static enum outcome op_map(const struct jval *args, struct reply *r, bool map)
{
	uint64_t iova, vaddr = 0, size;
	struct region *g = NULL;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_u64(args, "iova", &iova);
	if (rc)
		return bad_arg(r, "iova", rc, "an I/O virtual address");
	if (map) {
		if (region_range(args, r, &g, &vaddr, &size))
			return REPLY_ERROR;
		/* "perm": what the device may do with the memory: read it (to the device), write it, or both (the default). */
		const char *perm = "rw";
		rc = json_str(args, "perm", &perm);
		uint32_t flags = !strcmp(perm, "rw")	  ? VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE
				 : !strcmp(perm, "read")  ? VFIO_DMA_MAP_FLAG_READ
				 : !strcmp(perm, "write") ? VFIO_DMA_MAP_FLAG_WRITE
							  : 0;
		if (rc == -2 || !flags)
			return bad_arg(r, "perm", -2, "\"rw\", \"read\" (the device reads it) or \"write\" (the device writes it)");
		struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m), .flags = flags, .vaddr = vaddr, .iova = iova, .size = size };
		if (ioctl(container_fd, VFIO_IOMMU_MAP_DMA, &m))
			return fail_errno(r, errno, "VFIO_IOMMU_MAP_DMA iova 0x%llx size 0x%llx", (unsigned long long)iova, (unsigned long long)size);
	} else {
		rc = json_u64(args, "size", &size);
		if (rc)
			return bad_arg(r, "size", rc, "bytes");
		struct vfio_iommu_type1_dma_unmap m = { .argsz = sizeof(m), .iova = iova, .size = size };
		if (ioctl(container_fd, VFIO_IOMMU_UNMAP_DMA, &m))
			return fail_errno(r, errno, "VFIO_IOMMU_UNMAP_DMA iova 0x%llx size 0x%llx", (unsigned long long)iova, (unsigned long long)size);
	}
	sb_fmt(&r->val, "{\"iova\":\"0x%llx\",\"size\":%llu}", (unsigned long long)iova, (unsigned long long)size);
	return REPLY_OK;
}

static enum outcome op_close(struct reply *r, int *fd, const char *what)
{
	if (*fd < 0)
		return fail(r, "EBADF", "the %s is not open", what);
	close(*fd);
	*fd = -1;
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

/* The seeded leak: a child inherits the container and group fds and lives on. */
static enum outcome op_fork_holder(const struct jval *args, struct reply *r, int agent_fd)
{
	(void)args;
	if (container_fd < 0 && group_fd < 0)
		return fail(r, "EBADF", "nothing to hold: no container or group open");
	if (nholders >= 16)
		return fail(r, "ENOSPC", "at most 16 holders");
	pid_t pid = fork();
	if (pid < 0)
		return fail_errno(r, errno, "fork");
	if (pid == 0) {
		close(agent_fd);
		for (;;)
			pause();
	}
	holders[nholders++] = pid;
	sb_fmt(&r->val, "{\"pid\":%d}", pid);
	return REPLY_OK;
}

/*
 * Seeded fault for a userspace tool the worker did not start (the inner QEMU
 * of a nested lab host): duplicate another process's fds into this worker
 * with pidfd_getfd(2), as if they had been passed over a unix socket. The
 * duplicates reference the same open files, so the container and group stay
 * alive after that process exits.
 */
static int adopted[16];
static int nadopted;

static enum outcome op_adopt_fds(const struct jval *args, struct reply *r)
{
	uint64_t pid;
	int rc = json_u64(args, "pid", &pid);
	if (rc || pid < 2)
		return bad_arg(r, "pid", rc ? rc : -2, "a process id");
	const struct jval *fds = json_get(args, "fds");
	if (!fds || fds->type != J_ARR || fds->n < 1 || fds->n > 16 - nadopted)
		return bad_arg(r, "fds", fds ? -2 : -1, "an array of fd numbers (at most 16 adopted in all)");
	int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0)
		return fail_errno(r, errno, "pidfd_open %llu", (unsigned long long)pid);
	sb_raw(&r->val, "{\"fds\":[");
	for (int i = 0; i < fds->n; i++) {
		if (fds->items[i].type != J_NUM || fds->items[i].num < 0) {
			close(pidfd);
			return bad_arg(r, "fds", -2, "an array of fd numbers");
		}
		int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)fds->items[i].num, 0);
		if (fd < 0) {
			int e = errno;
			close(pidfd);
			return fail_errno(r, e, "pidfd_getfd %llu fd %d", (unsigned long long)pid, (int)fds->items[i].num);
		}
		adopted[nadopted++] = fd;
		sb_fmt(&r->val, "%s%d", i ? "," : "", fd);
	}
	close(pidfd);
	sb_raw(&r->val, "]}");
	return REPLY_OK;
}

static enum outcome op_status(struct reply *r)
{
	sb_fmt(&r->val, "{\"pid\":%d,\"group\":%d,\"containerOpen\":%s,\"groupOpen\":%s,\"vmLckKb\":%lld,\"vmPinKb\":%lld,\"regions\":[",
	       getpid(), group_no, container_fd >= 0 ? "true" : "false", group_fd >= 0 ? "true" : "false", proc_status_kb(getpid(), "VmLck"),
	       proc_status_kb(getpid(), "VmPin"));
	int first = 1;
	for (int i = 0; i < MAX_REGIONS; i++) {
		if (!regions[i].addr)
			continue;
		sb_fmt(&r->val, "%s{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu,\"hugetlb\":%s,\"registered\":%s}", first ? "" : ",", regions[i].id,
		       (unsigned long long)(uintptr_t)regions[i].addr, (unsigned long long)regions[i].size, regions[i].hugetlb ? "true" : "false",
		       regions[i].registered ? "true" : "false");
		first = 0;
	}
	sb_raw(&r->val, "],\"windows\":[");
	first = 1;
	for (int i = 0; i < MAX_WINDOWS; i++) {
		if (!windows[i])
			continue;
		sb_fmt(&r->val, "%s{\"startAddr\":\"0x%016llx\",\"windowSize\":\"0x%llx\",\"pageShift\":%d}", first ? "" : ",",
		       (unsigned long long)windows[i], (unsigned long long)window_sizes[i], window_shift[i]);
		first = 0;
	}
	sb_raw(&r->val, "],\"holders\":[");
	for (int i = 0; i < nholders; i++)
		sb_fmt(&r->val, "%s%d", i ? "," : "", holders[i]);
	sb_raw(&r->val, "]}");
	return REPLY_OK;
}

static enum outcome op_register_memory(const struct jval *args, struct reply *r)
{
	return op_register(args, r, true);
}

static enum outcome op_unregister_memory(const struct jval *args, struct reply *r)
{
	return op_register(args, r, false);
}

static enum outcome op_map_dma(const struct jval *args, struct reply *r)
{
	return op_map(args, r, true);
}

static enum outcome op_unmap_dma(const struct jval *args, struct reply *r)
{
	return op_map(args, r, false);
}

static enum outcome op_close_container(const struct jval *args, struct reply *r)
{
	(void)args;
	return op_close(r, &container_fd, "container");
}

static enum outcome op_close_group(const struct jval *args, struct reply *r)
{
	(void)args;
	return op_close(r, &group_fd, "group");
}

/* The socket to the agent: a holder the worker forks must not keep it open. */
static int agent_fd = -1;

static enum outcome op_fork_holder_child(const struct jval *args, struct reply *r)
{
	return op_fork_holder(args, r, agent_fd);
}

static enum outcome op_status_now(const struct jval *args, struct reply *r)
{
	(void)args;
	return op_status(r);
}

static int exit_code;

static enum outcome op_exit(const struct jval *args, struct reply *r)
{
	uint64_t code = 0;
	json_u64(args, "code", &code);
	exit_code = (int)code;
	sb_raw(&r->val, "{}");
	return REPLY_AND_EXIT;
}

/* The pattern of a seed: byte i of a buffer filled with `seed` (never all zero: zeros are what a failed DMA reads). */
static uint8_t pattern_byte(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ULL + i * 0xBF58476D1CE4E5B9ULL;
	x ^= x >> 29;
	return (uint8_t)(x | 1);
}

/* {"region", "offset", "size", "seed"} of fill and check: the bytes and the seed, or -1 with the reply filled. */
static int pattern_range(const struct jval *args, struct reply *r, struct region **g, uint64_t *vaddr, uint64_t *size, uint64_t *seed)
{
	if (region_range(args, r, g, vaddr, size))
		return -1;
	int rc = json_u64(args, "seed", seed);
	if (rc)
		return bad_arg(r, "seed", rc, "a number");
	return 0;
}

/* {"region", "offset", "size", "seed"}: fills bytes with the seed's pattern (what a copy carries, or a sentinel). */
static enum outcome op_fill(const struct jval *args, struct reply *r)
{
	struct region *g;
	uint64_t vaddr, size, seed;
	if (pattern_range(args, r, &g, &vaddr, &size, &seed))
		return REPLY_ERROR;
	uint8_t *p = (uint8_t *)(uintptr_t)vaddr;
	for (uint64_t i = 0; i < size; i++)
		p[i] = pattern_byte(seed, i);
	sb_fmt(&r->val, "{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu}", g->id, (unsigned long long)vaddr, (unsigned long long)size);
	return REPLY_OK;
}

/* {"region", "offset", "size", "seed"}: whether the bytes hold the seed's pattern; if not, what they hold instead. */
static enum outcome op_check(const struct jval *args, struct reply *r)
{
	struct region *g;
	uint64_t vaddr, size, seed;
	if (pattern_range(args, r, &g, &vaddr, &size, &seed))
		return REPLY_ERROR;
	const uint8_t *p = (const uint8_t *)(uintptr_t)vaddr;
	uint64_t mismatches = 0, zeros = 0;
	long long first = -1;
	for (uint64_t i = 0; i < size; i++) {
		zeros += p[i] == 0;
		if (p[i] != pattern_byte(seed, i)) {
			if (first < 0)
				first = (long long)i;
			mismatches++;
		}
	}
	sb_fmt(&r->val, "{\"equal\":%s,\"mismatches\":%llu,\"firstMismatch\":%lld,\"zeroBytes\":%llu,\"size\":%llu}", mismatches ? "false" : "true",
	       (unsigned long long)mismatches, first, (unsigned long long)zeros, (unsigned long long)size);
	return REPLY_OK;
}

/* Every operation a worker performs; a new operation is one entry. */
static const struct {
	const char *name;
	enum outcome (*fn)(const struct jval *args, struct reply *r);
} operations[] = {
	{ "open", op_open },
	{ "info", op_info },
	{ "alloc", op_alloc },
	{ "free", op_free },
	{ "register", op_register_memory },
	{ "unregister", op_unregister_memory },
	{ "create-window", op_create_window },
	{ "remove-window", op_remove_window },
	{ "map", op_map_dma },
	{ "unmap", op_unmap_dma },
	{ "close-container", op_close_container },
	{ "close-group", op_close_group },
	{ "fork-holder", op_fork_holder_child },
	{ "adopt-fds", op_adopt_fds },
	{ "status", op_status_now },
	{ "fill", op_fill },
	{ "check", op_check },
	{ "device-open", op_device_open },
	{ "msi-enable", op_msi_enable },
	{ "dma", op_dma },
	{ "device-close", op_device_close },
	{ "exit", op_exit },
};

static void respond(int fd, const struct reply *r, enum outcome o)
{
	struct sbuf out;
	sb_init(&out);
	reply_format(&out, r, o, NULL);
	size_t off = 0;
	while (off < out.len) {
		ssize_t n = write(fd, out.buf + off, out.len - off);
		if (n <= 0)
			_exit(1);
		off += n;
	}
	sb_free(&out);
}

/* Runs one operation by name: its outcome, with the reply filled. */
static enum outcome run_operation(const char *op, const struct jval *args, struct reply *r)
{
	static const struct jval empty = { .type = J_OBJ };
	for (size_t i = 0; i < sizeof(operations) / sizeof(operations[0]); i++)
		if (!strcmp(operations[i].name, op))
			return operations[i].fn(args ? args : &empty, r);
	return fail(r, "CommandNotFound", "the worker has no operation '%s'", op);
}

void worker_main(int fd)
{
	signal(SIGTERM, SIG_DFL);
	agent_fd = fd;
	struct sbuf line;
	sb_init(&line);
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n <= 0)
			_exit(0); /* the agent went away */
		if (c != '\n') {
			char one[2] = { c, 0 };
			sb_raw(&line, one);
			continue;
		}
		struct jval req;
		struct reply r;
		memset(&r, 0, sizeof(r));
		sb_init(&r.val);
		enum outcome o;
		const char *err = json_parse(line.buf ? line.buf : "", &req);
		line.len = 0;
		const char *op = NULL;
		if (err || json_str(&req, "op", &op))
			o = fail(&r, "GenericError", "malformed worker request");
		else
			o = run_operation(op, json_get(&req, "args"), &r);
		respond(fd, &r, o);
		sb_free(&r.val);
		json_free(&req);
		if (o == REPLY_AND_EXIT)
			_exit(exit_code);
	}
}
