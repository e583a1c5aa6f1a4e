// SPDX-License-Identifier: GPL-2.0
/*
 * tcelab_hcall: a TEST INSTRUMENT for tcelab's hostile-guest checks. It lets root issue ANY hypercall, an
 * H_PUT_TCE_INDIRECT with a list placed anywhere, and any RTAS call, with arguments the guest kernel would never pass,
 * so that the hypervisor's (QEMU's, KVM's) answers to them can be measured. Never load it outside a lab guest.
 *
 * /dev/tcelab_hcall (mode 0600, CAP_SYS_RAWIO): the ioctls of tcelab_hcall.h. GPL: rtas_call is EXPORT_SYMBOL_GPL.
 * Built against Debian's 6.12 and 7.2 kernels (plpar_hcall9 and rtas_call have the same signatures in both).
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/pci.h>
#include <linux/uaccess.h>
#include <asm/firmware.h>
#include <asm/hvcall.h>
#include <asm/iommu.h>
#include <asm/pci-bridge.h>
#include <asm/rtas.h>
#include "tcelab_hcall.h"

/* The indirect list's buffer: 4 pages, so 1024 values fit behind an offset of up to 8 KiB. */
#define LIST_ORDER 2
#define LIST_BYTES (PAGE_SIZE << LIST_ORDER)
#define LIST_MAX_OFFSET 8192

static unsigned long list_page; /* kernel address of the buffer, physically contiguous */
static DEFINE_MUTEX(list_lock);

static long do_hcall(struct tcelab_hcall *h)
{
	unsigned long ret[PLPAR_HCALL9_BUFSIZE] = { 0 };
	int i;

	h->rc = plpar_hcall9(h->opcode, ret, h->args[0], h->args[1], h->args[2], h->args[3], h->args[4], h->args[5],
			     h->args[6], h->args[7], h->args[8]);
	for (i = 0; i < TCELAB_HCALL_MAX_ARGS; i++)
		h->out[i] = ret[i];
	return 0;
}

static long do_indirect(struct tcelab_indirect *in)
{
	unsigned long ret[PLPAR_HCALL9_BUFSIZE];
	__be64 *list;
	u64 i, v;

	if (in->ntces > TCELAB_INDIRECT_MAX_TCES)
		return -EINVAL;
	switch (in->where) {
	case TCELAB_LIST_PAGE:
		in->offset = 0;
		fallthrough;
	case TCELAB_LIST_OFFSET:
		if (in->offset > LIST_MAX_OFFSET)
			return -EINVAL;
		in->list_phys = virt_to_phys((void *)list_page) + in->offset;
		break;
	case TCELAB_LIST_PHYS:
		in->list_phys = in->phys;
		break;
	default:
		return -EINVAL;
	}
	mutex_lock(&list_lock);
	if (in->where != TCELAB_LIST_PHYS) {
		/* The hypervisor reads what the list holds beyond ntces too: zeros, not the last call's values. */
		memset((void *)list_page, 0, LIST_BYTES);
		list = (__be64 *)(list_page + in->offset);
		for (i = 0; i < in->ntces; i++) {
			if (get_user(v, (u64 __user *)u64_to_user_ptr(in->tces) + i)) {
				mutex_unlock(&list_lock);
				return -EFAULT;
			}
			list[i] = cpu_to_be64(v);
		}
	}
	in->rc = plpar_hcall9(H_PUT_TCE_INDIRECT, ret, in->liobn, in->ioba, in->list_phys, in->npages);
	mutex_unlock(&list_lock);
	return 0;
}

/* A service's token: the /rtas property of its name (what rtas_token() falls back to, in every version). */
static int rtas_service_token(const char *service, u32 *token)
{
	struct device_node *rtas_node = of_find_node_by_path("/rtas");
	int err;

	if (!rtas_node)
		return -ENODEV;
	err = of_property_read_u32(rtas_node, service, token);
	of_node_put(rtas_node);
	return err ? -ENOENT : 0;
}

static long do_rtas(struct tcelab_rtas *r)
{
	int out[TCELAB_RTAS_MAX_RET - 1] = { 0 };
	const u64 *a = r->args;
	u32 token;
	int i, err;

	r->service[sizeof(r->service) - 1] = 0;
	if (r->nargs > TCELAB_RTAS_MAX_ARGS || r->nret < 1 || r->nret > TCELAB_RTAS_MAX_RET)
		return -EINVAL;
	err = rtas_service_token(r->service, &token);
	if (err)
		return err;
	r->token = token;
	/* rtas_call reads nargs of the variadic arguments: passing all 8 is fine. */
	r->status = rtas_call(token, r->nargs, r->nret, out, (u32)a[0], (u32)a[1], (u32)a[2], (u32)a[3], (u32)a[4],
			      (u32)a[5], (u32)a[6], (u32)a[7]);
	for (i = 0; i < TCELAB_RTAS_MAX_RET - 1; i++)
		r->out[i] = (u32)out[i];
	return 0;
}

/* As iommu.c's DDW code computes them: from the device's pci_dn, and the table group up its device-tree parents. */
static long do_pe(struct tcelab_pe *p)
{
	struct pci_dev *pdev;
	struct device_node *dn;
	struct pci_dn *pdn;
	struct iommu_table_group *group = NULL;
	int i;

	if (p->domain > 0xffff || p->bus > 0xff || p->devfn > 0xff)
		return -EINVAL;
	pdev = pci_get_domain_bus_and_slot(p->domain, p->bus, p->devfn);
	if (!pdev)
		return -ENODEV;
	dn = pci_device_to_OF_node(pdev);
	pdn = dn ? PCI_DN(dn) : NULL;
	if (pdn) {
		p->cfg_addr = (pdn->busno << 16) | (pdn->devfn << 8);
		p->buid = pdn->phb->buid;
	} else {
		p->cfg_addr = (pdev->bus->number << 16) | (pdev->devfn << 8);
		p->buid = pci_bus_to_host(pdev->bus)->buid;
	}
	for (; dn && PCI_DN(dn) && !group; dn = dn->parent)
		group = PCI_DN(dn)->table_group;
	p->tables = 0;
	for (i = 0; group && i < 2; i++) {
		struct iommu_table *tbl = group->tables[i];

		if (!tbl)
			continue;
		p->tables |= 1ULL << i;
		p->liobn[i] = tbl->it_index;
		p->page_shift[i] = tbl->it_page_shift;
		p->window_start[i] = (u64)tbl->it_offset << tbl->it_page_shift;
		p->window_size[i] = (u64)tbl->it_size << tbl->it_page_shift;
	}
	pci_dev_put(pdev);
	return 0;
}

/* One request: copied in, run, copied out. */
#define OP(type, fn)                                                \
	do {                                                            \
		type req;                                               \
		if (copy_from_user(&req, argp, sizeof(req)))            \
			return -EFAULT;                                 \
		err = fn(&req);                                         \
		if (!err && copy_to_user(argp, &req, sizeof(req)))      \
			err = -EFAULT;                                  \
	} while (0)

static long tcelab_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *argp = (void __user *)arg;
	long err;

	if (!capable(CAP_SYS_RAWIO))
		return -EPERM;
	switch (cmd) {
	case TCELAB_IOC_HCALL:
		OP(struct tcelab_hcall, do_hcall);
		break;
	case TCELAB_IOC_INDIRECT:
		OP(struct tcelab_indirect, do_indirect);
		break;
	case TCELAB_IOC_RTAS:
		OP(struct tcelab_rtas, do_rtas);
		break;
	case TCELAB_IOC_PE:
		OP(struct tcelab_pe, do_pe);
		break;
	default:
		return -ENOTTY;
	}
	return err;
}

static const struct file_operations tcelab_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = tcelab_ioctl,
};

static struct miscdevice tcelab_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "tcelab_hcall",
	.fops = &tcelab_fops,
	.mode = 0600,
};

static int __init tcelab_init(void)
{
	int err;

	if (!firmware_has_feature(FW_FEATURE_LPAR))
		return -ENODEV;
	list_page = __get_free_pages(GFP_KERNEL | __GFP_ZERO, LIST_ORDER);
	if (!list_page)
		return -ENOMEM;
	err = misc_register(&tcelab_misc);
	if (err)
		free_pages(list_page, LIST_ORDER);
	return err;
}

static void __exit tcelab_exit(void)
{
	misc_deregister(&tcelab_misc);
	free_pages(list_page, LIST_ORDER);
}

module_init(tcelab_init);
module_exit(tcelab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("tcelab test instrument: raw hypercalls and RTAS calls from root (hostile-guest tests)");
