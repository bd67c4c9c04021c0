# The platform's private network, its router to the outside, and one security group per kind
# of traffic: ssh (Ansible), http (LMS and CMS) and guacd (reachable from the web hosts only).

resource "openstack_networking_network_v2" "this" {
  name           = "${var.name_prefix}-net"
  admin_state_up = true
}

resource "openstack_networking_subnet_v2" "this" {
  name            = "${var.name_prefix}-subnet"
  network_id      = openstack_networking_network_v2.this.id
  cidr            = var.cidr
  ip_version      = 4
  dns_nameservers = var.dns_nameservers
}

resource "openstack_networking_router_v2" "this" {
  count = var.external_network_id == null ? 0 : 1

  name                = "${var.name_prefix}-router"
  admin_state_up      = true
  external_network_id = var.external_network_id
}

resource "openstack_networking_router_interface_v2" "this" {
  count = var.external_network_id == null ? 0 : 1

  router_id = openstack_networking_router_v2.this[0].id
  subnet_id = openstack_networking_subnet_v2.this.id
}

resource "openstack_networking_secgroup_v2" "ssh" {
  name        = "${var.name_prefix}-ssh"
  description = "SSH from the operators' networks (Ansible)"
}

resource "openstack_networking_secgroup_rule_v2" "ssh" {
  for_each = toset(var.ssh_allowed_cidrs)

  security_group_id = openstack_networking_secgroup_v2.ssh.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = each.value
}

resource "openstack_networking_secgroup_v2" "http" {
  name        = "${var.name_prefix}-http"
  description = "HTTP(S) to the LMS and CMS"
}

resource "openstack_networking_secgroup_rule_v2" "http" {
  for_each = {
    for pair in setproduct(var.http_allowed_cidrs, var.lms_ports) : "${pair[0]}:${pair[1]}" => {
      cidr = pair[0]
      port = pair[1]
    }
  }

  security_group_id = openstack_networking_secgroup_v2.http.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.cidr
}

resource "openstack_networking_secgroup_v2" "guacd" {
  name        = "${var.name_prefix}-guacd"
  description = "guacd, from the hosts in the http group only"
}

resource "openstack_networking_secgroup_rule_v2" "guacd" {
  security_group_id = openstack_networking_secgroup_v2.guacd.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = var.guacd_port
  port_range_max    = var.guacd_port
  remote_group_id   = openstack_networking_secgroup_v2.http.id
}
