/* PCI devices and IOMMU groups in sysfs: what the guest has for VFIO (info), and binding a device to vfio-pci
 * and back (bind, unbind). */
#include "agent.h"
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/vfio.h>

static void basename_of_link(const char *path, char *out, size_t max)
{
	char target[PATH_MAX];
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		out[0] = 0;
		return;
	}
	target[n] = 0;
	snprintf(out, max, "%s", basename(target));
}

static int valid_bdf(const char *bdf)
{
	unsigned d, b, s, f;
	char tail;
	return strlen(bdf) == 12 && sscanf(bdf, "%4x:%2x:%2x.%1u%c", &d, &b, &s, &f, &tail) == 4 && f < 8;
}

static void device_json(struct sbuf *s, const char *bdf)
{
	char path[300], v[32] = "", d[32] = "", drv[64] = "", grp[32] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", bdf);
	read_text(path, v, sizeof(v));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", bdf);
	read_text(path, d, sizeof(d));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, drv, sizeof(drv));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	basename_of_link(path, grp, sizeof(grp));
	trim(v);
	trim(d);
	sb_raw(s, "{\"address\":");
	sb_jstr(s, bdf);
	sb_raw(s, ",\"vendor\":");
	sb_jstr(s, v);
	sb_raw(s, ",\"device\":");
	sb_jstr(s, d);
	sb_raw(s, ",\"driver\":");
	if (drv[0])
		sb_jstr(s, drv);
	else
		sb_raw(s, "null");
	sb_fmt(s, ",\"iommuGroup\":%s}", grp[0] ? grp : "null");
}

static void groups_json(struct sbuf *s)
{
	sb_raw(s, "[");
	DIR *d = opendir("/sys/kernel/iommu_groups");
	int first = 1;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300];
		snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%s/devices", e->d_name);
		DIR *dd = opendir(path);
		if (!first)
			sb_raw(s, ",");
		first = 0;
		char vpath[300];
		snprintf(vpath, sizeof(vpath), "/dev/vfio/%s", e->d_name);
		sb_fmt(s, "{\"group\":%s,\"vfioNode\":%s,\"devices\":[", e->d_name, access(vpath, F_OK) == 0 ? "true" : "false");
		struct dirent *de;
		int f2 = 1;
		while (dd && (de = readdir(dd))) {
			if (de->d_name[0] == '.')
				continue;
			if (!f2)
				sb_raw(s, ",");
			f2 = 0;
			device_json(s, de->d_name);
		}
		if (dd)
			closedir(dd);
		sb_raw(s, "]}");
	}
	if (d)
		closedir(d);
	sb_raw(s, "]");
}

enum outcome cmd_info(const struct request *req, struct reply *r)
{
	(void)req;
	struct utsname u;
	uname(&u);
	long long huge_kb = kv_value("/proc/meminfo", "Hugepagesize");
	sb_raw(&r->val, "{\"kernelRelease\":");
	sb_jstr(&r->val, u.release);
	sb_raw(&r->val, ",\"machine\":");
	sb_jstr(&r->val, u.machine);
	sb_fmt(&r->val, ",\"pageSize\":%ld,\"hugePageSize\":%lld,\"agentPid\":%d", sysconf(_SC_PAGESIZE), huge_kb * 1024, getpid());
	int c = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (c >= 0) {
		sb_fmt(&r->val, ",\"vfio\":{\"apiVersion\":%d,\"spaprTceV1\":%s,\"spaprTceV2\":%s}",
		       ioctl(c, VFIO_GET_API_VERSION),
		       ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU) > 0 ? "true" : "false",
		       ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) > 0 ? "true" : "false");
		close(c);
	} else {
		sb_raw(&r->val, ",\"vfio\":null");
	}
	sb_raw(&r->val, ",\"iommuGroups\":");
	groups_json(&r->val);
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

enum outcome cmd_bind(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *bdf;
	int rc = json_str(args, "device", &bdf);
	if (rc || !valid_bdf(bdf))
		return bad_arg(r, "device", rc ? rc : -2, "a PCI address such as 0001:00:00.0");
	char path[300], prev[64] = "", now[64] = "", grp[32] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
	if (access(path, F_OK))
		return fail(r, "ENODEV", "no PCI device %s in the guest", bdf);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, prev, sizeof(prev));
	if (strcmp(prev, "vfio-pci")) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
		if ((rc = write_text(path, "vfio-pci")))
			return fail_errno(r, -rc, "write %s", path);
		if (prev[0]) {
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", bdf);
			if ((rc = write_text(path, bdf)))
				return fail_errno(r, -rc, "unbind %s from %s", bdf, prev);
		}
		if ((rc = write_text("/sys/bus/pci/drivers_probe", bdf)))
			return fail_errno(r, -rc, "drivers_probe %s", bdf);
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, now, sizeof(now));
	if (strcmp(now, "vfio-pci"))
		return fail(r, "EIO", "%s is bound to '%s' after probing, not vfio-pci (is the vfio-pci module loaded?)", bdf, now[0] ? now : "nothing");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	basename_of_link(path, grp, sizeof(grp));
	if (!grp[0])
		return fail(r, "ENODEV", "%s has no IOMMU group", bdf);
	sb_raw(&r->val, "{\"device\":");
	sb_jstr(&r->val, bdf);
	sb_raw(&r->val, ",\"previousDriver\":");
	if (prev[0])
		sb_jstr(&r->val, prev);
	else
		sb_raw(&r->val, "null");
	sb_fmt(&r->val, ",\"group\":%s}", grp);
	return REPLY_OK;
}

enum outcome cmd_unbind(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *bdf;
	int rc = json_str(args, "device", &bdf);
	if (rc || !valid_bdf(bdf))
		return bad_arg(r, "device", rc ? rc : -2, "a PCI address such as 0001:00:00.0");
	char path[300], drv[64] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, drv, sizeof(drv));
	if (drv[0]) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", bdf);
		if ((rc = write_text(path, bdf)))
			return fail_errno(r, -rc, "unbind %s from %s", bdf, drv);
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
	write_text(path, "\n");
	/* Give the device back to whatever driver claims it by default. */
	write_text("/sys/bus/pci/drivers_probe", bdf);
	char now[64] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, now, sizeof(now));
	sb_raw(&r->val, "{\"device\":");
	sb_jstr(&r->val, bdf);
	sb_raw(&r->val, ",\"previousDriver\":");
	if (drv[0])
		sb_jstr(&r->val, drv);
	else
		sb_raw(&r->val, "null");
	sb_raw(&r->val, ",\"driver\":");
	if (now[0])
		sb_jstr(&r->val, now);
	else
		sb_raw(&r->val, "null");
	sb_raw(&r->val, "}");
	return REPLY_OK;
}
