# The compute module on a cloud with Nova but no Neutron (labplane's local cloud local-servers:
# Nova with the fake virt driver, which runs no VM): real Nova servers with no network
# (network_id null), each given a made-up address from cidr that its metadata holds, and a key
# pair. Nothing answers at those addresses: the example takes provision -> output -> inventory
# -> destroy through a real Nova, not a deploy. The provider reads its cloud from OS_CLOUD
# (labplane sets it from the spec's provision.cloud).

resource "openstack_compute_keypair_v2" "ansible" {
  name       = "${var.name_prefix}-ansible"
  public_key = var.ssh_public_key
}

module "compute" {
  source = "../../modules/compute"

  name_prefix    = var.name_prefix
  services       = var.services
  default_flavor = var.default_flavor
  image_name     = var.image_name
  key_pair       = openstack_compute_keypair_v2.ansible.name
  stand_in_cidr  = var.cidr
}
