output "hosts" {
  description = "The hosts of each service, for the inventory: {lms = [{name, address}], cms = [...], guacd = [...]}, in host number order."
  value = {
    for service, spec in var.services : service => [
      for i in range(spec.count) : {
        name    = local.hosts["${service}-${i + 1}"].name
        address = openstack_compute_instance_v2.host["${service}-${i + 1}"].access_ip_v4
      }
    ]
  }
}

output "ids" {
  description = "Instance IDs by host name."
  value       = { for key, host in local.hosts : host.name => openstack_compute_instance_v2.host[key].id }
}
