output "hosts" {
  description = "The hosts of each service, for the inventory: {lms = [{name, address}], cms = [...], guacd = [...]}, in host number order. The address is the instance's access address on its network or, with no network, its made-up address as Nova's metadata holds it."
  value = {
    for service, spec in var.services : service => [
      for i in range(spec.count) : {
        name    = local.hosts["${service}-${i + 1}"].name
        address = local.addresses["${service}-${i + 1}"]
      }
    ]
  }
}

output "ids" {
  description = "Instance IDs by host name."
  value       = { for key, host in local.hosts : host.name => openstack_compute_instance_v2.host[key].id }
}
