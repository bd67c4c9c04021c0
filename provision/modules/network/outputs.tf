output "network_id" {
  description = "ID of the private network."
  value       = openstack_networking_network_v2.this.id
}

output "subnet_id" {
  description = "ID of the private subnet."
  value       = openstack_networking_subnet_v2.this.id
}

output "security_groups" {
  description = "Names of the security groups each service's hosts need: {lms = [...], cms = [...], guacd = [...]}."
  value = {
    lms   = [openstack_networking_secgroup_v2.ssh.name, openstack_networking_secgroup_v2.http.name]
    cms   = [openstack_networking_secgroup_v2.ssh.name, openstack_networking_secgroup_v2.http.name]
    guacd = [openstack_networking_secgroup_v2.ssh.name, openstack_networking_secgroup_v2.guacd.name]
  }
}
