output "hosts" {
  description = "The hosts of each service, which labplane renders into the inventory: names from name_prefix, addresses read back from the stack."
  value = {
    for service in ["lms", "cms", "guacd"] : service => [
      for n in local.nodes : {
        name    = n.name
        address = local.stack_outputs[n.key]
      } if n.service == service
    ]
  }
}

output "stack_id" {
  description = "ID of the Heat stack."
  value       = openstack_orchestration_stack_v1.nodes.id
}
