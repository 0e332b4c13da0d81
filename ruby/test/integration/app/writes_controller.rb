class WritesController < ActionController::API
  # POST /writes?n=ID: one row in each of the four databases.
  def create
    n = params.fetch(:n).to_i
    body = "payload #{n} " * 8
    Post.create!(n: n, body: body)
    CacheEntry.create!(key: "k#{n}", value: body)
    QueueJob.create!(n: n, payload: body)
    CableMessage.create!(channel: "c#{n % 7}", payload: body)
    render plain: "ok #{n}\n"
  end

  def show
    render plain: "#{Post.count} #{CacheEntry.count} #{QueueJob.count} #{CableMessage.count}\n"
  end
end
