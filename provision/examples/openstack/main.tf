# An environment on a full OpenStack cloud (Nova, Neutron, Glance): the network module's
# private network and security groups, and the compute module's hosts on it. The provider
# reads its cloud from OS_CLOUD (labplane sets it from the spec's provision.cloud).

resource "openstack_compute_keypair_v2" "ansible" {
  name       = "${var.name_prefix}-ansible"
  public_key = var.ssh_public_key
}

module "network" {
  source = "../../modules/network"

  name_prefix         = var.name_prefix
  cidr                = var.cidr
  external_network_id = var.external_network_id
  ssh_allowed_cidrs   = var.ssh_allowed_cidrs
}

module "compute" {
  source = "../../modules/compute"

  name_prefix     = var.name_prefix
  services        = var.services
  default_flavor  = var.default_flavor
  image_name      = var.image_name
  key_pair        = openstack_compute_keypair_v2.ansible.name
  network_id      = module.network.network_id
  security_groups = module.network.security_groups

  # the subnet must exist before a host gets an address on the network
  depends_on = [module.network]
}
